//! Who may call and who may sign in: the issuers whose tokens Reins accepts (`identity`) and the
//! console's sessions and OpenID Connect provider (`console`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Trust the dev issuer whose key Reins generated in the data dir (`reins token mint`).
    pub dev_issuer: bool,
    /// Audience the dev issuer's tokens carry and that Reins expects from it.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Claim holding the caller's roles (array of strings or space-separated string).
    pub roles_claim: String,
    /// A token naming an unknown `kid` refetches a JWKS at most this often, so forged kids cannot
    /// turn Reins into a request amplifier against the identity provider.
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_interval: Duration,
    /// External issuers whose tokens are accepted.
    pub issuers: Vec<IssuerConfig>,
}

/// A trusted token issuer. Exactly one key source must be set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Expected `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one.
    pub audiences: Vec<String>,
    /// Accepted `alg` values. HMAC (`HS*`) only with `allow_hmac = true`; `none` never.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    pub pem_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    /// File holding an HMAC shared secret. Requires `allow_hmac`.
    pub hmac_secret_file: Option<PathBuf>,
    /// Shared-secret tokens can be minted by anyone holding the secret; opt in explicitly.
    #[serde(default)]
    pub allow_hmac: bool,
}

fn default_algorithms() -> Vec<String> {
    vec!["EdDSA".into(), "ES256".into(), "RS256".into()]
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            dev_issuer: true,
            audience: "reins".into(),
            leeway: Duration::from_secs(30),
            roles_claim: "roles".into(),
            jwks_refetch_interval: Duration::from_secs(30),
            issuers: Vec::new(),
        }
    }
}

/// The console's sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// A session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however busy.
    #[serde(with = "humantime_serde")]
    pub absolute_timeout: Duration,
    /// Mark the session cookie `Secure` (set it when Reins is served over TLS; it is also set
    /// when a proxy sends `X-Forwarded-Proto: https`).
    pub secure_cookie: bool,
    /// Sign-in through an OpenID Connect provider (authorization code flow with PKCE). Unset:
    /// only the dev issuer's one-time links sign in.
    pub oidc: Option<OidcConfig>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            secure_cookie: false,
            oidc: None,
        }
    }
}

/// The OpenID Connect provider people sign in to the console with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL; its metadata is discovered at
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// What the sign-in page calls it ("Sign in with ...").
    #[serde(default = "default_oidc_name")]
    pub name: String,
    pub client_id: String,
    /// File holding the client secret, for a confidential client. Unset: a public client (PKCE
    /// alone proves the code was asked for here).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends people back: this server's `/console/oidc/callback` as the
    /// browser reaches it, registered with the provider
    /// (e.g. `https://reins.example.com/console/oidc/callback`).
    pub redirect_url: String,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_oidc_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim holding the person's roles (an array of strings or a space-separated
    /// string). Someone with no role the console knows is not signed in.
    #[serde(default = "default_oidc_roles_claim")]
    pub roles_claim: String,
    /// The ID token claim that names the person in the ledger (letters, digits and `. _ - : @`).
    #[serde(default = "default_oidc_person_claim")]
    pub person_claim: String,
}

fn default_oidc_name() -> String {
    "your identity provider".into()
}

fn default_oidc_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into()]
}

fn default_oidc_roles_claim() -> String {
    "roles".into()
}

fn default_oidc_person_claim() -> String {
    "sub".into()
}

impl IssuerConfig {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.issuer.is_empty() {
            return Err(("issuer", "must not be empty".into()));
        }
        if self.audiences.is_empty() {
            return Err(("audiences", "must list at least one audience".into()));
        }
        if self.algorithms.is_empty() {
            return Err(("algorithms", "must list at least one algorithm".into()));
        }
        for alg in &self.algorithms {
            let parsed: jsonwebtoken::Algorithm = alg.parse().map_err(|_| {
                (
                    "algorithms",
                    format!("`{alg}` is not a supported JWS algorithm (`none` never is)"),
                )
            })?;
            let hmac = matches!(
                parsed,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            );
            if hmac && !self.allow_hmac {
                return Err((
                    "algorithms",
                    format!(
                        "`{alg}` is a shared-secret algorithm; set allow_hmac = true to accept it"
                    ),
                ));
            }
        }
        let sources = [
            self.pem_file.is_some(),
            self.jwks_file.is_some(),
            self.jwks_url.is_some(),
            self.hmac_secret_file.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err((
                "pem_file",
                "set exactly one of pem_file, jwks_file, jwks_url, hmac_secret_file".into(),
            ));
        }
        if self.hmac_secret_file.is_some() && !self.allow_hmac {
            return Err(("hmac_secret_file", "requires allow_hmac = true".into()));
        }
        Ok(())
    }
}
