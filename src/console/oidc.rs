//! Sign-in through an OpenID Connect provider: the authorization code flow with PKCE, by the
//! `openidconnect` crate (discovery, the authorization URL, the code exchange, the ID token's
//! signature, issuer, audience, expiry and nonce).
//!
//! What Reins adds is where the flow's secrets live. `/console/oidc/start` gives the browser a
//! signed cookie holding only a random sign-in id and its start time; the `state`, the `nonce` and
//! the PKCE verifier are each an HMAC of that id under a key derived from the ledger's signing key.
//! So nothing secret is stored in the browser or the database, and any replica sharing the keys
//! dir can finish a sign-in another began. The callback recomputes them: a `state` that is not
//! this browser's, a sign-in older than [`SIGN_IN_TIMEOUT`], or one finished before (the database
//! takes each sign-in id once, as it does a dev link) is refused before the code is spent.
//!
//! The sign-in cookie is `SameSite=Lax`, unlike the session's `Strict`: the provider sends the
//! browser back with a cross-site navigation, which carries only Lax cookies. For the same reason
//! the callback answers with a page that moves on to the console rather than a redirect: a redirect
//! would still be part of the cross-site navigation, and the new session cookie would be withheld.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse,
    StandardTokenResponse,
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{Console, page_error, session, sign_in};
use crate::config::OidcConfig;

/// How long a person may take at the provider before the sign-in must start again.
pub const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long discovered provider metadata (endpoints and signing keys) is used before it is
/// fetched again, so that a provider's key rotation is picked up.
const METADATA_TTL: Duration = Duration::from_secs(10 * 60);
const COOKIE: &str = "reins_console_oidc";
/// The most of a provider's answer Reins reads.
const MAX_PROVIDER_BODY: usize = 1 << 20;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The ID token's claims beyond the standard ones (where the roles are).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OtherClaims(serde_json::Map<String, serde_json::Value>);
impl AdditionalClaims for OtherClaims {}

type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

/// A client made from discovered metadata: authorization endpoint set, token endpoint maybe.
type Client = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The configured provider, its discovered metadata and the key the flow's secrets derive from.
pub struct Oidc {
    config: OidcConfig,
    secret: Option<ClientSecret>,
    http: reqwest::Client,
    keyed: Hmac<Sha256>,
    discovered: tokio::sync::Mutex<Option<(Arc<Client>, Instant)>>,
}

/// Why a sign-in through the provider did not complete; each is a page saying so.
#[derive(Debug, thiserror::Error)]
enum OidcError {
    #[error("the identity provider cannot be reached or answered something unusable: {0}")]
    Provider(String),
    #[error("no sign-in was started in this browser, or it was finished already: start again")]
    NoSignIn,
    #[error("the sign-in took longer than {} minutes: start again", SIGN_IN_TIMEOUT.as_secs() / 60)]
    TooSlow,
    #[error(
        "the answer from the identity provider is not for the sign-in this browser started (its state does not match)"
    )]
    WrongState,
    #[error("the answer comes from another issuer ({0}) than the one configured")]
    WrongIssuer(String),
    #[error("this sign-in was completed already: start again")]
    Replayed,
    #[error("the identity provider did not sign you in: {0}")]
    Refused(String),
    #[error("the identity provider's ID token is not acceptable: {0}")]
    IdToken(String),
    #[error("{0}")]
    NotAPerson(String),
}

impl OidcError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Provider(_) => StatusCode::BAD_GATEWAY,
            Self::NoSignIn | Self::TooSlow | Self::WrongState | Self::WrongIssuer(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::Replayed | Self::Refused(_) | Self::IdToken(_) => StatusCode::UNAUTHORIZED,
            Self::NotAPerson(_) => StatusCode::FORBIDDEN,
        }
    }
}

impl Oidc {
    pub fn new(config: OidcConfig, key: [u8; 32]) -> Result<Self, String> {
        let secret = match &config.client_secret_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("console.oidc.client_secret_file {}: {e}", path.display())
                })?;
                Some(ClientSecret::new(text.trim().to_owned()))
            }
            None => None,
        };
        crate::crypto::install_crypto_provider();
        let http = reqwest::Client::builder()
            // Following redirects would let a provider's answer point Reins at another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("console.oidc: HTTP client: {e}"))?;
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            secret,
            http,
            keyed,
            discovered: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The flow's value `purpose` (`state`, `nonce`, `pkce`) for sign-in `id`: 43 characters of
    /// base64url, which is also a valid PKCE verifier.
    fn derived(&self, purpose: &[u8], id: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(purpose);
        mac.update(&[0]);
        mac.update(id.as_bytes());
        B64.encode(mac.finalize().into_bytes())
    }

    fn cookie_value(&self, id: &str, started: u64) -> String {
        let tag = self.derived(b"sign-in", &format!("{id}.{started}"));
        format!("{id}.{started}.{tag}")
    }

    /// The sign-in id this browser's cookie names, if the cookie is ours and not too old.
    fn open_cookie(&self, value: &str, now: u64) -> Result<String, OidcError> {
        let mut parts = value.splitn(3, '.');
        let (Some(id), Some(started), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OidcError::NoSignIn);
        };
        let expected = self.derived(b"sign-in", &format!("{id}.{started}"));
        if !constant_time_eq(expected.as_bytes(), tag.as_bytes()) {
            return Err(OidcError::NoSignIn);
        }
        let started: u64 = started.parse().map_err(|_| OidcError::NoSignIn)?;
        if now >= started.saturating_add(SIGN_IN_TIMEOUT.as_secs()) {
            return Err(OidcError::TooSlow);
        }
        Ok(id.to_owned())
    }

    /// The provider's client, discovered now or within [`METADATA_TTL`].
    async fn client(&self) -> Result<Arc<Client>, OidcError> {
        let mut discovered = self.discovered.lock().await;
        if let Some((client, at)) = discovered.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(client.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        let http = self.http_client();
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Provider(error_chain(&e)))?;
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        let client = Arc::new(
            Client::from_provider_metadata(
                metadata,
                ClientId::new(self.config.client_id.clone()),
                self.secret.clone(),
            )
            .set_redirect_uri(redirect),
        );
        *discovered = Some((client.clone(), Instant::now()));
        Ok(client)
    }

    /// The HTTP client `openidconnect` calls, over Reins's own reqwest.
    fn http_client(
        &self,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, reqwest::Error>> + Send>,
    > + use<> {
        let http = self.http.clone();
        move |request: openidconnect::HttpRequest| {
            let http = http.clone();
            Box::pin(async move {
                let mut response = http.execute(request.try_into()?).await?;
                let status = response.status();
                let headers = response.headers().clone();
                // Discovery documents, key sets and token answers are a few kilobytes; a body
                // past the limit is cut there (and then fails to parse) rather than held whole.
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_PROVIDER_BODY {
                        body.truncate(MAX_PROVIDER_BODY);
                        break;
                    }
                }
                let mut answer = openidconnect::HttpResponse::new(body);
                *answer.status_mut() = status;
                *answer.headers_mut() = headers;
                Ok(answer)
            })
        }
    }

    /// Where the browser goes to sign in, and the cookie that binds the answer to it.
    async fn begin(&self, now: u64) -> Result<(url::Url, String), OidcError> {
        let client = self.client().await?;
        let id = session::new_id();
        let verifier = PkceCodeVerifier::new(self.derived(b"pkce", &id));
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let (state, nonce) = (self.derived(b"state", &id), self.derived(b"nonce", &id));
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.url();
        Ok((url, self.cookie_value(&id, now)))
    }

    /// The person the provider vouches for, from the callback's code; `id` is the sign-in's.
    async fn finish(&self, id: &str, code: String) -> Result<(String, Vec<String>), OidcError> {
        let client = self.client().await?;
        let http = self.http_client();
        let verifier = PkceCodeVerifier::new(self.derived(b"pkce", id));
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Provider(e.to_string()))?
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .map_err(|e| OidcError::Refused(error_chain(&e)))?;
        let id_token = openidconnect::TokenResponse::id_token(&tokens)
            .ok_or_else(|| OidcError::IdToken("the answer holds no ID token".into()))?;
        let nonce = Nonce::new(self.derived(b"nonce", id));
        let claims = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map_err(|e| OidcError::IdToken(e.to_string()))?;
        let person = match self.config.person_claim.as_str() {
            "sub" => Some(claims.subject().to_string()),
            "email" => claims.email().map(|e| e.to_string()),
            "preferred_username" => claims.preferred_username().map(|u| u.to_string()),
            other => claims
                .additional_claims()
                .0
                .get(other)
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        }
        .ok_or_else(|| {
            OidcError::NotAPerson(format!(
                "the ID token has no `{}` claim to name you by",
                self.config.person_claim
            ))
        })?;
        if person.parse::<crate::ids::AgentId>().is_err() {
            return Err(OidcError::NotAPerson(format!(
                "your `{}` claim ({person}) is not a name Reins can record (letters, digits and . _ - : @)",
                self.config.person_claim
            )));
        }
        let roles = roles_of(claims.additional_claims().0.get(&self.config.roles_claim));
        if !roles.iter().any(|r| super::READERS.contains(&r.as_str())) {
            return Err(OidcError::NotAPerson(format!(
                "your identity provider gives you no role the console is for (claim `{}`: {}); ask for one of {}",
                self.config.roles_claim,
                if roles.is_empty() {
                    "none".to_owned()
                } else {
                    roles.join(", ")
                },
                super::READERS.join(", ")
            )));
        }
        Ok((person, roles))
    }
}

/// Roles from a claim that is an array of strings or one space-separated string.
fn roles_of(claim: Option<&serde_json::Value>) -> Vec<String> {
    let mut roles: Vec<String> = match claim {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::String(text)) => {
            text.split_whitespace().map(str::to_owned).collect()
        }
        _ => Vec::new(),
    };
    roles.sort();
    roles.dedup();
    roles
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error and its sources, one line (the crate's errors say little at the top).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The sign-in cookie: HttpOnly, Lax (see the module doc), only sent to `/console/oidc`.
fn sign_in_cookie(console: &Console, headers: &HeaderMap, value: &str) -> HeaderValue {
    let max_age = if value.is_empty() {
        0
    } else {
        SIGN_IN_TIMEOUT.as_secs()
    };
    let secure = if super::is_secure(console, headers) {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn failed(console: &Console, headers: &HeaderMap, error: &OidcError) -> Response {
    tracing::info!(%error, "console: OpenID Connect sign-in refused");
    let mut response = page_error(error.status(), &format!("Not signed in: {error}."));
    // Whatever went wrong, this sign-in is over.
    response
        .headers_mut()
        .insert(header::SET_COOKIE, sign_in_cookie(console, headers, ""));
    response
}

/// `GET /console/oidc/start`: off to the provider.
pub(super) async fn start(State(console): State<Console>, headers: HeaderMap) -> Response {
    let Some(oidc) = console.oidc.as_ref() else {
        return page_error(
            StatusCode::NOT_FOUND,
            "This server has no OpenID Connect provider configured (console.oidc).",
        );
    };
    match oidc.begin(super::now_secs()).await {
        Ok((url, cookie)) => {
            let mut response = Redirect::to(url.as_str()).into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                sign_in_cookie(&console, &headers, &cookie),
            );
            response
        }
        Err(error) => failed(&console, &headers, &error),
    }
}

#[derive(Deserialize)]
pub(super) struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    /// RFC 9207: the issuer that answered, from a provider that says so.
    #[serde(default)]
    iss: Option<String>,
}

/// `GET /console/oidc/callback`: the provider's answer, checked, then a session.
pub(super) async fn callback(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Response {
    let Some(oidc) = console.oidc.clone() else {
        return page_error(
            StatusCode::NOT_FOUND,
            "This server has no OpenID Connect provider configured (console.oidc).",
        );
    };
    let id = match checked(&oidc, &headers, &answer) {
        Ok(id) => id,
        Err(error) => return failed(&console, &headers, &error),
    };
    let link = format!("oidc:{id}");
    // Refused before the code is spent, so a replayed answer never reaches the provider.
    match console.app.store.console_link_used(&link).await {
        Ok(false) => {}
        Ok(true) => return failed(&console, &headers, &OidcError::Replayed),
        Err(error) => return super::unavailable("used sign-ins", error),
    }
    let code = answer.code.unwrap_or_default();
    let (person, roles) = match oidc.finish(&id, code).await {
        Ok(found) => found,
        Err(error) => return failed(&console, &headers, &error),
    };
    let mut response = sign_in::start_session(
        &console,
        &headers,
        sign_in::Opened {
            person,
            roles,
            method: "oidc",
            link,
        },
        sign_in::Landing::Page,
    )
    .await;
    response
        .headers_mut()
        .append(header::SET_COOKIE, sign_in_cookie(&console, &headers, ""));
    response
}

/// The sign-in id of this browser's sign-in, if the answer belongs to it.
fn checked(oidc: &Oidc, headers: &HeaderMap, answer: &Callback) -> Result<String, OidcError> {
    // An answer naming another issuer is a mix-up: a code from another provider would be spent
    // at this one's token endpoint (RFC 9207).
    if let Some(iss) = &answer.iss
        && iss.trim_end_matches('/') != oidc.config.issuer.trim_end_matches('/')
    {
        return Err(OidcError::WrongIssuer(iss.clone()));
    }
    if let Some(error) = &answer.error {
        let description = answer.error_description.as_deref().unwrap_or("");
        return Err(OidcError::Refused(
            format!("{error} {description}").trim().to_owned(),
        ));
    }
    let cookie = super::cookie_named(headers, COOKIE).ok_or(OidcError::NoSignIn)?;
    let id = oidc.open_cookie(&cookie, super::now_secs())?;
    let expected = oidc.derived(b"state", &id);
    let state = answer.state.as_deref().unwrap_or("");
    if !constant_time_eq(expected.as_bytes(), state.as_bytes()) {
        return Err(OidcError::WrongState);
    }
    if answer.code.as_deref().is_none_or(str::is_empty) {
        return Err(OidcError::Refused("the answer carries no code".into()));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc() -> Oidc {
        Oidc::new(
            OidcConfig {
                issuer: "http://127.0.0.1:1".into(),
                name: "Test".into(),
                client_id: "reins".into(),
                client_secret_file: None,
                redirect_url: "http://127.0.0.1:2/console/oidc/callback".into(),
                scopes: vec![],
                roles_claim: "roles".into(),
                person_claim: "sub".into(),
            },
            [9; 32],
        )
        .unwrap()
    }

    #[test]
    fn a_sign_in_cookie_opens_only_as_made_and_only_for_ten_minutes() {
        let oidc = oidc();
        let value = oidc.cookie_value("abc", 1_000);
        assert_eq!(oidc.open_cookie(&value, 1_100).unwrap(), "abc");
        assert!(matches!(
            oidc.open_cookie(&value, 1_000 + 600),
            Err(OidcError::TooSlow)
        ));
        // A later start under the old tag, another id, or junk: not ours.
        let tag = value.rsplit('.').next().unwrap();
        for forged in [
            format!("abc.2000.{tag}"),
            format!("abd.1000.{tag}"),
            "abc".into(),
        ] {
            assert!(matches!(
                oidc.open_cookie(&forged, 1_100),
                Err(OidcError::NoSignIn)
            ));
        }
    }

    #[test]
    fn the_derived_verifier_is_a_valid_pkce_verifier_and_differs_per_purpose() {
        let oidc = oidc();
        let verifier = oidc.derived(b"pkce", "abc");
        // RFC 7636 4.1: 43 to 128 unreserved characters.
        assert_eq!(verifier.len(), 43);
        assert!(
            verifier
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        );
        assert_ne!(verifier, oidc.derived(b"state", "abc"));
        assert_ne!(verifier, oidc.derived(b"pkce", "abd"));
    }

    #[test]
    fn roles_come_from_an_array_or_a_spaced_string() {
        assert_eq!(
            roles_of(Some(&serde_json::json!(["operator", "auditor", 3]))),
            ["auditor", "operator"]
        );
        assert_eq!(
            roles_of(Some(&serde_json::json!("approver  auditor"))),
            ["approver", "auditor"]
        );
        assert!(roles_of(None).is_empty());
    }
}
