//! Who is calling: JWT verification against trusted issuers, and the local dev issuer.
//!
//! A token is accepted only if its `iss` names a configured issuer, its `alg` is on that issuer's
//! allow-list, it verifies under one of the issuer's keys, and `aud`, `exp` and `nbf` check out
//! (with a small leeway). The verified token becomes a [`Caller`]: the agent (`sub`, or `act.sub`
//! under RFC 8693 delegation), the user it acts for, and its roles. This module never decides what
//! a caller may do; that is Cedar's job (decisions) and [`Caller::require_any_role`] (admin API).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::Value;
use sha2::Digest;
use tokio::sync::{Mutex, RwLock};

use crate::config::{IdentityConfig, IssuerConfig};
use crate::crypto::{ed25519_key_file, install_crypto_provider};
use crate::ids::{AgentId, UserId};

/// `iss` of tokens minted by `reins token mint`.
pub const DEV_ISSUER: &str = "reins-dev";
/// File name of the dev issuer's Ed25519 private key (PKCS#8 PEM) inside the keys folder.
pub const DEV_KEY_FILE: &str = "dev-issuer.pem";

/// Role names the admin API checks.
pub mod roles {
    pub const ADMIN: &str = "admin";
    pub const AUDITOR: &str = "auditor";
    pub const OPERATOR: &str = "operator";
    pub const APPROVER: &str = "approver";
    pub const COMPLIANCE_OFFICER: &str = "compliance_officer";
    /// Uploads, activates and retires policy versions.
    pub const POLICY_ADMIN: &str = "policy_admin";
    /// A policy enforcement point calling the AuthZEN API on behalf of its subjects.
    pub const PEP: &str = "pep";
    /// Records objections to decisions and their resolution.
    pub const REVIEWER: &str = "reviewer";
}

/// Why a token was refused. Every variant is a 401 except [`AuthError::KeysUnavailable`].
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <jwt>`")]
    MissingToken,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token issuer `{0}` is not trusted")]
    UntrustedIssuer(String),
    #[error("token algorithm {0:?} is not allowed for this issuer")]
    AlgorithmNotAllowed(Algorithm),
    #[error("no key of issuer `{issuer}` matches the token (kid {kid:?})")]
    UnknownKey { issuer: String, kid: Option<String> },
    #[error("token rejected: {0}")]
    Rejected(String),
    #[error("token claim `{claim}`: {message}")]
    BadClaim { claim: String, message: String },
    #[error("cannot fetch the keys of issuer `{issuer}`: {message}")]
    KeysUnavailable { issuer: String, message: String },
}

/// Why the identity set-up could not be built (at start, or when minting).
#[derive(Debug, thiserror::Error)]
pub enum IdentitySetupError {
    #[error("{path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("issuer `{issuer}`: {message}")]
    Issuer { issuer: String, message: String },
    #[error("the dev issuer is turned off (identity.dev_issuer = false)")]
    DevIssuerOff,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal: the token's `sub`, or `act.sub` when the token is a delegation.
    pub agent: AgentId,
    /// The user the agent acts for (the delegation's `sub`).
    pub on_behalf_of: Option<UserId>,
    pub roles: BTreeSet<String>,
    pub issuer: String,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Ok if the caller holds at least one of `roles`.
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), MissingRole> {
        if roles.iter().any(|r| self.has_role(r)) {
            Ok(())
        } else {
            Err(MissingRole {
                needed: roles.iter().map(|r| r.to_string()).collect(),
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("this needs one of the roles {needed:?}")]
pub struct MissingRole {
    pub needed: Vec<String>,
}

/// Verifies bearer tokens against the trusted issuers.
///
/// An agent sends the same token on every call until it expires; verifying its signature each
/// time is a third of a decision's CPU. Verified tokens are cached by their exact text (so an
/// altered token always misses) until their `exp`, and at most [`CACHE_TTL`], so that a key removed
/// from an issuer's JWKS stops being honoured within that time.
pub struct Verifier {
    issuers: HashMap<String, TrustedIssuer>,
    leeway: Duration,
    roles_claim: String,
    cache: quick_cache::sync::Cache<String, Verified>,
    /// The dev issuer's key and the audience of its console sign-in links, when it is enabled.
    console_links: Option<(DecodingKey, String)>,
}

/// A verified console sign-in link: who signs in with which roles, and the link's own id (used
/// once).
#[derive(Debug, Clone)]
pub struct ConsoleLink {
    pub person: Caller,
    pub jti: String,
}

/// The audience of console sign-in links: never the API's, so a link is no bearer token and a
/// bearer token no link.
pub fn console_audience(api_audience: &str) -> String {
    format!("{api_audience}/console")
}

#[derive(Clone)]
struct Verified {
    caller: Caller,
    /// Unix seconds.
    valid_until: u64,
}

/// Longest a verified token is trusted without checking its signature again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: usize = 10_000;

struct TrustedIssuer {
    name: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    keys: KeySource,
}

enum KeySource {
    Static(Vec<Key>),
    Jwks(JwksCache),
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

/// Keys fetched from a JWKS URL. Refetched when a token names an unknown `kid`, but at most once
/// per `min_refetch`, so a stream of forged kids cannot turn Reins into a fetch amplifier.
struct JwksCache {
    url: String,
    min_refetch: Duration,
    client: reqwest::Client,
    state: RwLock<JwksState>,
    fetch: Mutex<()>,
}

#[derive(Default)]
struct JwksState {
    keys: Arc<Vec<Key>>,
    fetched_at: Option<Instant>,
}

const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
const JWKS_MAX_BYTES: usize = 256 * 1024;
const JWKS_MAX_KEYS: usize = 64;

impl Verifier {
    /// Builds the verifier from configuration. `dev_key` is the local dev issuer's key when it is
    /// enabled.
    pub fn new(
        config: &IdentityConfig,
        dev_key: Option<&DevIssuer>,
    ) -> Result<Self, IdentitySetupError> {
        let mut issuers = HashMap::new();
        if let Some(dev) = dev_key {
            issuers.insert(
                DEV_ISSUER.to_string(),
                TrustedIssuer {
                    name: DEV_ISSUER.into(),
                    audiences: vec![config.audience.clone()],
                    algorithms: vec![Algorithm::EdDSA],
                    keys: KeySource::Static(vec![Key {
                        kid: Some(dev.kid.clone()),
                        key: dev.decoding_key(),
                    }]),
                },
            );
        }
        for issuer in &config.issuers {
            let trusted = TrustedIssuer::from_config(issuer, config.jwks_refetch_interval)?;
            if issuers.insert(issuer.issuer.clone(), trusted).is_some() {
                return Err(IdentitySetupError::Issuer {
                    issuer: issuer.issuer.clone(),
                    message: "configured twice (or clashes with the dev issuer)".into(),
                });
            }
        }
        Ok(Self {
            issuers,
            leeway: config.leeway,
            roles_claim: config.roles_claim.clone(),
            cache: quick_cache::sync::Cache::new(CACHE_CAPACITY),
            console_links: dev_key.map(|d| (d.decoding_key(), console_audience(&config.audience))),
        })
    }

    /// Verifies a console sign-in link minted by `reins console-link` (the dev issuer, the console
    /// audience, a `jti`); whether it was used already is the caller's to check.
    pub fn verify_console_link(&self, token: &str) -> Result<ConsoleLink, AuthError> {
        let (key, audience) = self.console_links.as_ref().ok_or_else(|| {
            AuthError::UntrustedIssuer(format!("{DEV_ISSUER} (the dev issuer is off)"))
        })?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[DEV_ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|e| AuthError::Rejected(describe_jwt_error(&e)))?;
        let jti = data
            .claims
            .get("jti")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| AuthError::BadClaim {
                claim: "jti".into(),
                message: "missing".into(),
            })?;
        Ok(ConsoleLink {
            person: self.caller_from_claims(DEV_ISSUER, data.claims)?,
            jti,
        })
    }

    /// Verifies `token` and maps its claims to a [`Caller`].
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = self.cache.get(token)
            && now < hit.valid_until
        {
            return Ok(hit.caller);
        }
        let (caller, exp) = self.verify_uncached(token).await?;
        let valid_until = exp.min(now + CACHE_TTL.as_secs());
        self.cache.insert(
            token.to_owned(),
            Verified {
                caller: caller.clone(),
                valid_until,
            },
        );
        Ok(caller)
    }

    /// Full verification; returns the caller and the token's `exp`.
    async fn verify_uncached(&self, token: &str) -> Result<(Caller, u64), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        #[derive(Deserialize)]
        struct Unverified {
            iss: Option<String>,
        }
        // The issuer picks the keys; it is read before verification and checked again by it.
        let unverified: Unverified = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| AuthError::Malformed(e.to_string()))?;
        let iss = unverified.iss.ok_or_else(|| AuthError::BadClaim {
            claim: "iss".into(),
            message: "missing".into(),
        })?;
        let issuer = self
            .issuers
            .get(&iss)
            .ok_or_else(|| AuthError::UntrustedIssuer(iss.clone()))?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(header.alg));
        }

        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&issuer.audiences);
        validation.set_issuer(&[&issuer.name]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

        let keys = issuer.keys_for(header.kid.as_deref()).await?;
        let family = header.alg.family();
        let mut last_error = None;
        for key in keys.iter().filter(|k| k.key.family() == family) {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
                    return Ok((self.caller_from_claims(&iss, data.claims)?, exp));
                }
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) => Err(AuthError::Rejected(describe_jwt_error(&e))),
            None => Err(AuthError::UnknownKey {
                issuer: iss,
                kid: header.kid,
            }),
        }
    }

    fn caller_from_claims(&self, issuer: &str, claims: Value) -> Result<Caller, AuthError> {
        let bad = |claim: &str, message: &str| AuthError::BadClaim {
            claim: claim.into(),
            message: message.into(),
        };
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("sub", "must be a string"))?;
        let (agent, on_behalf_of) = match claims.get("act") {
            None | Some(Value::Null) => (sub, None),
            Some(act) => {
                let actor = act
                    .get("sub")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("act.sub", "must be a string"))?;
                (actor, Some(sub))
            }
        };
        let agent: AgentId = agent
            .parse()
            .map_err(|e: crate::ids::IdError| bad("sub", &e.to_string()))?;
        let on_behalf_of = on_behalf_of
            .map(|u| u.parse::<UserId>())
            .transpose()
            .map_err(|e| bad("sub", &e.to_string()))?;
        let roles = match claims.get(&self.roles_claim) {
            None | Some(Value::Null) => BTreeSet::new(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(&self.roles_claim, "must be an array of strings"))?,
            Some(_) => {
                return Err(bad(
                    &self.roles_claim,
                    "must be an array of strings or a string",
                ));
            }
        };
        Ok(Caller {
            agent,
            on_behalf_of,
            roles,
            issuer: issuer.to_owned(),
        })
    }
}

fn describe_jwt_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token has expired".into(),
        K::ImmatureSignature => "token is not valid yet (nbf)".into(),
        K::InvalidAudience => "token audience is not accepted".into(),
        K::InvalidIssuer => "token issuer is not accepted".into(),
        K::InvalidSignature => "signature does not verify".into(),
        K::MissingRequiredClaim(c) => format!("required claim `{c}` is missing"),
        K::InvalidAlgorithm => "algorithm does not match the key".into(),
        other => format!("{other:?}"),
    }
}

impl TrustedIssuer {
    fn from_config(c: &IssuerConfig, min_refetch: Duration) -> Result<Self, IdentitySetupError> {
        let err = |message: String| IdentitySetupError::Issuer {
            issuer: c.issuer.clone(),
            message,
        };
        let algorithms = c
            .algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .map_err(|_| err(format!("unsupported algorithm `{a}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| IdentitySetupError::Key {
                path: path.into(),
                message: e.to_string(),
            })
        };
        let keys = if let Some(path) = &c.pem_file {
            let pem = read(path)?;
            let key = pem_decoding_key(&pem, &algorithms).ok_or_else(|| {
                err(format!(
                    "{} holds no public key usable with {:?}",
                    path.display(),
                    c.algorithms
                ))
            })?;
            KeySource::Static(vec![Key { kid: None, key }])
        } else if let Some(path) = &c.jwks_file {
            let set: JwkSet = serde_json::from_slice(&read(path)?)
                .map_err(|e| err(format!("{}: not a JWKS: {e}", path.display())))?;
            KeySource::Static(keys_from_jwks(&set))
        } else if let Some(path) = &c.hmac_secret_file {
            let secret = read(path)?;
            let secret = secret.trim_ascii();
            if secret.len() < 32 {
                return Err(err("HMAC secret must be at least 32 bytes".into()));
            }
            KeySource::Static(vec![Key {
                kid: None,
                key: DecodingKey::from_secret(secret),
            }])
        } else if let Some(url) = &c.jwks_url {
            install_crypto_provider();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| err(format!("HTTP client: {e}")))?;
            KeySource::Jwks(JwksCache {
                url: url.clone(),
                min_refetch,
                client,
                state: RwLock::new(JwksState::default()),
                fetch: Mutex::new(()),
            })
        } else {
            return Err(err("no key source configured".into()));
        };
        Ok(Self {
            name: c.issuer.clone(),
            audiences: c.audiences.clone(),
            algorithms,
            keys,
        })
    }

    async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<Vec<Key>>, AuthError> {
        let select = |keys: &[Key]| -> Vec<Key> {
            keys.iter()
                .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
                .cloned()
                .collect()
        };
        match &self.keys {
            KeySource::Static(keys) => Ok(Arc::new(select(keys))),
            KeySource::Jwks(cache) => {
                let found = select(&cache.current(&self.name, false).await?);
                if !found.is_empty() {
                    return Ok(Arc::new(found));
                }
                Ok(Arc::new(select(&cache.current(&self.name, true).await?)))
            }
        }
    }
}

impl JwksCache {
    /// The cached keys, fetched first if there are none or they are old; with `unknown_kid`, fetched
    /// again unless the last fetch was less than `min_refetch` ago.
    async fn current(&self, issuer: &str, unknown_kid: bool) -> Result<Arc<Vec<Key>>, AuthError> {
        let fresh_enough = |s: &JwksState| match s.fetched_at {
            None => false,
            Some(at) if unknown_kid => at.elapsed() < self.min_refetch,
            Some(at) => at.elapsed() < JWKS_MAX_AGE,
        };
        {
            let state = self.state.read().await;
            if fresh_enough(&state) {
                return Ok(state.keys.clone());
            }
        }
        let _one_fetch_at_a_time = self.fetch.lock().await;
        {
            let state = self.state.read().await;
            if fresh_enough(&state) {
                return Ok(state.keys.clone());
            }
        }
        let unavailable = |message: String| AuthError::KeysUnavailable {
            issuer: issuer.into(),
            message,
        };
        let result = self.fetch_keys().await;
        let mut state = self.state.write().await;
        // A failed fetch also counts, so an unreachable JWKS is not hammered.
        state.fetched_at = Some(Instant::now());
        match result {
            Ok(keys) => {
                state.keys = Arc::new(keys);
                Ok(state.keys.clone())
            }
            Err(message) if state.keys.is_empty() => Err(unavailable(message)),
            Err(message) => {
                tracing::warn!(issuer, %message, "JWKS refetch failed; keeping the cached keys");
                Ok(state.keys.clone())
            }
        }
    }

    async fn fetch_keys(&self) -> Result<Vec<Key>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{} answered {}", self.url, response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > JWKS_MAX_BYTES as u64)
        {
            return Err("JWKS document is too large".into());
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > JWKS_MAX_BYTES {
            return Err("JWKS document is too large".into());
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        Ok(keys_from_jwks(&set))
    }
}

fn keys_from_jwks(set: &JwkSet) -> Vec<Key> {
    set.keys
        .iter()
        .filter(|jwk| jwk.is_supported())
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            // A JWKS that hands out shared secrets would let anyone who reads it mint tokens.
            (key.family() != AlgorithmFamily::Hmac).then(|| Key {
                kid: jwk.common.key_id.clone(),
                key,
            })
        })
        .take(JWKS_MAX_KEYS)
        .collect()
}

fn pem_decoding_key(pem: &[u8], algorithms: &[Algorithm]) -> Option<DecodingKey> {
    algorithms.iter().find_map(|alg| match alg.family() {
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem).ok(),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem).ok(),
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem).ok(),
        _ => None,
    })
}

/// The local dev issuer: an Ed25519 key that Reins generates in its data dir so that a new user can
/// mint tokens and try everything without an identity provider.
pub struct DevIssuer {
    signing: SigningKey,
    pub kid: String,
}

impl DevIssuer {
    /// Loads the dev key from `keys_dir`, generating it (mode 0600) if missing. Returns whether it
    /// was generated.
    pub fn load_or_generate(keys_dir: &Path) -> Result<(Self, bool), IdentitySetupError> {
        let path = keys_dir.join(DEV_KEY_FILE);
        let (signing, generated) = ed25519_key_file(&path, true)
            .map_err(|message| IdentitySetupError::Key { path, message })?;
        Ok((Self::from_signing(signing), generated))
    }

    /// Loads an existing dev key without creating one.
    pub fn load(keys_dir: &Path) -> Result<Option<Self>, IdentitySetupError> {
        if keys_dir.join(DEV_KEY_FILE).exists() {
            Self::load_or_generate(keys_dir).map(|(k, _)| Some(k))
        } else {
            Ok(None)
        }
    }

    fn from_signing(signing: SigningKey) -> Self {
        let digest = sha2::Sha256::digest(signing.verifying_key().as_bytes());
        let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12]);
        Self { signing, kid }
    }

    fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(self.signing.verifying_key().as_bytes())
    }

    /// Signs a token for `agent`, optionally as a delegation from `on_behalf_of`.
    pub fn mint(&self, request: &MintRequest<'_>) -> Result<String, IdentitySetupError> {
        let now = jsonwebtoken::get_current_timestamp();
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), DEV_ISSUER.into());
        claims.insert("aud".into(), request.audience.into());
        claims.insert("iat".into(), now.into());
        claims.insert("nbf".into(), now.into());
        claims.insert("exp".into(), (now + request.ttl.as_secs()).into());
        claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
        match request.on_behalf_of {
            Some(user) => {
                claims.insert("sub".into(), user.as_str().into());
                claims.insert(
                    "act".into(),
                    serde_json::json!({ "sub": request.agent.as_str() }),
                );
            }
            None => {
                claims.insert("sub".into(), request.agent.as_str().into());
            }
        }
        if !request.roles.is_empty() {
            claims.insert(request.roles_claim.into(), request.roles.into());
        }
        let der = self
            .signing
            .to_pkcs8_der()
            .map_err(|e| IdentitySetupError::Key {
                path: DEV_KEY_FILE.into(),
                message: e.to_string(),
            })?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).map_err(
            |e| IdentitySetupError::Key {
                path: DEV_KEY_FILE.into(),
                message: e.to_string(),
            },
        )
    }
}

/// What `reins token mint` signs.
pub struct MintRequest<'a> {
    pub agent: &'a AgentId,
    pub on_behalf_of: Option<&'a UserId>,
    pub roles: &'a [String],
    pub ttl: Duration,
    pub audience: &'a str,
    pub roles_claim: &'a str,
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::MissingToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token.trim())
}
