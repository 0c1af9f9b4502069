//! Every way a token can be wrong is a 401 that stores nothing; issuers from PEM and JWKS work.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reins::config::IssuerConfig;
use serde_json::{Value, json};

use crate::harness::{TestServer, test_config};

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims(agent: &str) -> Value {
    json!({"iss": "reins-dev", "sub": agent, "aud": "reins", "iat": now(), "exp": now() + 600})
}

fn sign(key: &SigningKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    let der = key.to_pkcs8_der().unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
}

fn dev_key(s: &TestServer) -> SigningKey {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(s.config.keys_dir().join("dev-issuer.pem")).unwrap();
    SigningKey::from_pkcs8_pem(&pem).unwrap()
}

async fn ready(s: &TestServer) {
    s.tool("search.web", "low").await;
    s.agent("bot", "limited", &["search.web"]).await;
}

/// Asserts a 401 naming `needle`, and that nothing was stored.
async fn refused(s: &TestServer, token: &str, needle: &str) {
    let (status, body) = s.invoke(token, "search.web", json!({})).await;
    assert_eq!(status, 401, "expected 401 for {needle}: {body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "{message:?} should mention {needle:?}"
    );
    assert_eq!(s.stored_decisions().await, 0);
}

#[tokio::test]
async fn a_valid_dev_token_is_accepted() {
    let s = TestServer::start().await;
    ready(&s).await;
    let token = sign(&dev_key(&s), Some(&s.dev().kid), &claims("bot"));
    let (status, d) = s.invoke(&token, "search.web", json!({})).await;
    assert_eq!(
        (status, d["decision"].as_str()),
        (200, Some("allow")),
        "{d}"
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_and_store_nothing() {
    let s = TestServer::start().await;
    ready(&s).await;
    let key = dev_key(&s);
    let kid = s.dev().kid;
    let kid = Some(kid.as_str());

    let mut c = claims("bot");
    c["exp"] = json!(now() - 3600);
    refused(&s, &sign(&key, kid, &c), "expired").await;

    let mut c = claims("bot");
    c["nbf"] = json!(now() + 3600);
    refused(&s, &sign(&key, kid, &c), "not valid yet").await;

    let mut c = claims("bot");
    c["aud"] = json!("someone-else");
    refused(&s, &sign(&key, kid, &c), "audience").await;

    let mut c = claims("bot");
    c["iss"] = json!("https://evil.example");
    refused(&s, &sign(&key, kid, &c), "not trusted").await;

    let stranger = SigningKey::from_bytes(&[7; 32]);
    refused(
        &s,
        &sign(&stranger, Some("other-kid"), &claims("bot")),
        "no key",
    )
    .await;
    refused(&s, &sign(&stranger, kid, &claims("bot")), "signature").await;

    // Tampered: the payload is changed after signing.
    let token = sign(&key, kid, &claims("bot"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = B64.encode(serde_json::to_vec(&claims("admin-bot")).unwrap());
    refused(
        &s,
        &format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
        "signature",
    )
    .await;
    // Tampered: one signature byte flipped.
    let mut signature = B64.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    refused(
        &s,
        &format!("{}.{}.{}", parts[0], parts[1], B64.encode(signature)),
        "signature",
    )
    .await;

    // alg none: no signature at all.
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(&claims("bot")).unwrap());
    refused(&s, &format!("{header}.{payload}."), "malformed").await;

    // HS256 with the issuer's public key as the shared secret (the classic key-confusion forgery),
    // as raw bytes and as PEM.
    let public = key.verifying_key();
    let pem = public
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    for secret in [public.as_bytes().to_vec(), pem.into_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        let forged =
            jsonwebtoken::encode(&header, &claims("bot"), &EncodingKey::from_secret(&secret))
                .unwrap();
        refused(&s, &forged, "HS256").await;
    }

    // Garbage, a missing header and the wrong scheme.
    refused(&s, "not.a.jwt", "malformed").await;
    let (status, body) = s
        .send(
            reqwest::Method::POST,
            "/v1/decisions",
            None,
            Some(&json!({"action": "invoke", "resource": {"type": "Tool", "id": "search.web"}})),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing bearer token")
    );
    let response = s
        .client
        .post(s.url("/v1/decisions"))
        .header("authorization", "Basic Ym90OmJvdA==")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(s.stored_decisions().await, 0);
}

#[tokio::test]
async fn leeway_tolerates_small_clock_skew() {
    let s = TestServer::start().await;
    ready(&s).await;
    let mut c = claims("bot");
    c["exp"] = json!(now() - 5); // default leeway is 30s
    let (status, body) = s
        .invoke(
            &sign(&dev_key(&s), Some(&s.dev().kid), &c),
            "search.web",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_dev_issuer_can_be_turned_off() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.identity.dev_issuer = true;
    // First start generates the key; the second, with the dev issuer off, must not trust it.
    let mut s = TestServer::with_config(data, config.clone()).await;
    let token = s.admin();
    if let Some(server) = s.server.take() {
        server.stop().await;
    }
    let data = s.data;
    config.identity.dev_issuer = false;
    let s = TestServer::with_config(data, config).await;
    let (status, body) = s.get("/v1/agents", &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("reins-dev"),
        "{body}"
    );
}

/// A JWKS endpoint whose keys can be rotated, counting its fetches.
struct JwksServer {
    url: String,
    keys: Arc<std::sync::Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

fn jwk(key: &SigningKey, kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(key.verifying_key().as_bytes()), "kid": kid, "alg": "EdDSA", "use": "sig"})
}

async fn jwks_server(initial: Vec<Value>) -> JwksServer {
    let keys = Arc::new(std::sync::Mutex::new(initial));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (keys.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"keys": *k.lock().unwrap()}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    JwksServer { url, keys, fetches }
}

async fn jwks_reins(jwks_url: &str, refetch: Duration) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(data.path(), None);
    config.identity.jwks_refetch_interval = refetch;
    config.identity.issuers.push(IssuerConfig {
        jwks_url: Some(jwks_url.into()),
        ..idp_issuer("EdDSA")
    });
    let s = TestServer::with_config(data, config).await;
    ready(&s).await;
    s
}

/// The test identity provider, with one algorithm and no key source yet.
fn idp_issuer(algorithm: &str) -> IssuerConfig {
    IssuerConfig {
        issuer: "https://idp.example".into(),
        audiences: vec!["reins-prod".into()],
        algorithms: vec![algorithm.into()],
        pem_file: None,
        jwks_file: None,
        jwks_url: None,
        hmac_secret_file: None,
        allow_hmac: false,
    }
}

fn idp_claims(agent: &str) -> Value {
    json!({"iss": "https://idp.example", "sub": agent, "aud": ["reins-prod", "other"], "exp": now() + 600})
}

#[tokio::test]
async fn a_jwks_issuer_is_fetched_cached_and_refetched_on_rotation() {
    let old = SigningKey::from_bytes(&[1; 32]);
    let new = SigningKey::from_bytes(&[2; 32]);
    let idp = jwks_server(vec![jwk(&old, "k1")]).await;
    let s = jwks_reins(&idp.url, Duration::ZERO).await;

    for _ in 0..3 {
        let (status, d) = s
            .invoke(
                &sign(&old, Some("k1"), &idp_claims("bot")),
                "search.web",
                json!({}),
            )
            .await;
        assert_eq!(
            (status, d["decision"].as_str()),
            (200, Some("allow")),
            "{d}"
        );
    }
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1, "keys are cached");

    idp.keys.lock().unwrap().push(jwk(&new, "k2"));
    let (status, d) = s
        .invoke(
            &sign(&new, Some("k2"), &idp_claims("bot")),
            "search.web",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "a new kid triggers a refetch: {d}");
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 2);

    // The dev issuer's audience is not this issuer's.
    let mut c = idp_claims("bot");
    c["aud"] = json!("reins");
    let (status, _) = s
        .invoke(&sign(&old, Some("k1"), &c), "search.web", json!({}))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn forged_kids_do_not_hammer_the_jwks_endpoint() {
    let key = SigningKey::from_bytes(&[1; 32]);
    let idp = jwks_server(vec![jwk(&key, "k1")]).await;
    let s = jwks_reins(&idp.url, Duration::from_secs(3600)).await;
    assert_eq!(
        s.invoke(
            &sign(&key, Some("k1"), &idp_claims("bot")),
            "search.web",
            json!({})
        )
        .await
        .0,
        200
    );
    for i in 0..10 {
        let (status, body) = s
            .invoke(
                &sign(&key, Some(&format!("forged-{i}")), &idp_claims("bot")),
                "search.web",
                json!({}),
            )
            .await;
        assert_eq!(status, 401, "{body}");
    }
    assert_eq!(idp.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unreachable_jwks_is_a_503_not_an_allow() {
    let s = jwks_reins("http://127.0.0.1:9/jwks", Duration::ZERO).await;
    let key = SigningKey::from_bytes(&[1; 32]);
    let (status, body) = s
        .invoke(
            &sign(&key, Some("k1"), &idp_claims("bot")),
            "search.web",
            json!({}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "identity_unavailable");
    assert_eq!(s.stored_decisions().await, 0);
}

#[tokio::test]
async fn a_pem_issuer_with_es256_is_accepted() {
    // ES256 key pair generated once with openssl for this test.
    const PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFBdmgSfZQH+i5047
P30y+merlhsHxiBLaaoEcy82V6WhRANCAAQbGk/Yzp+n/qRRgl5D5QJCm5dGPB0o
p6ppunzPr0abcREIKBWap3MVmtzA4uUugkKqjJsEivVV3ZAWFoxLS+Xg
-----END PRIVATE KEY-----
";
    const PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEGxpP2M6fp/6kUYJeQ+UCQpuXRjwd
KKeqabp8z69Gm3ERCCgVmqdzFZrcwOLlLoJCqoybBIr1Vd2QFhaMS0vl4A==
-----END PUBLIC KEY-----
";
    let data = tempfile::tempdir().unwrap();
    let pem_path = data.path().join("idp.pem");
    std::fs::write(&pem_path, PUBLIC).unwrap();
    let mut config = test_config(data.path(), None);
    config.identity.issuers.push(IssuerConfig {
        pem_file: Some(pem_path),
        ..idp_issuer("ES256")
    });
    let s = TestServer::with_config(data, config).await;
    ready(&s).await;
    let key = EncodingKey::from_ec_pem(PRIVATE.as_bytes()).unwrap();
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &idp_claims("bot"), &key).unwrap();
    let (status, d) = s.invoke(&token, "search.web", json!({})).await;
    assert_eq!(
        (status, d["decision"].as_str()),
        (200, Some("allow")),
        "{d}"
    );
    // The same issuer with an algorithm it did not allow.
    let ed = SigningKey::from_bytes(&[3; 32]);
    let (status, body) = s
        .invoke(
            &sign(&ed, None, &idp_claims("bot")),
            "search.web",
            json!({}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not allowed"),
        "{body}"
    );
}

#[tokio::test]
async fn a_cached_token_does_not_let_an_altered_copy_through() {
    let s = TestServer::start().await;
    ready(&s).await;
    let token = sign(&dev_key(&s), Some(&s.dev().kid), &claims("bot"));
    for _ in 0..3 {
        assert_eq!(s.invoke(&token, "search.web", json!({})).await.0, 200);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims("bot");
    forged["sub"] = json!("admin-bot");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(serde_json::to_vec(&forged).unwrap()),
        parts[2]
    );
    let (status, body) = s.invoke(&forged, "search.web", json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(s.invoke(&token, "search.web", json!({})).await.0, 200);
}
