//! Request extractors that fail with [`ApiError`]s naming the problem: JSON bodies (content type,
//! size, syntax, the path of a wrong field), query strings, path ids and bearer tokens.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::AppState;
use crate::identity::{Caller, bearer_token};

/// A JSON body, deserialised with the failing field's path reported.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("expected Content-Type: application/json, got {content_type:?}"),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is over the size limit",
                )
            } else {
                ApiError::bad_request("invalid_body", rejection.body_text())
            }
        })?;
        // Every body this API takes is an object. serde would also read a struct from an array
        // of its fields in order (`[null]` as `{"from": null}`), which no client means.
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            None => return Err(ApiError::bad_request("invalid_json", "the body is empty")),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_json",
                    "the body must be a JSON object",
                ));
            }
        }
        if escapes_nul(&bytes) {
            return Err(ApiError::bad_request(
                "invalid_body",
                "strings may not contain U+0000 (NUL)",
            ));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// Whether a JSON text escapes U+0000 in a string (a raw NUL is not JSON at all). PostgreSQL's
/// text type cannot hold one, and no field of this API needs one: refused before anything reads
/// the body, on either backend alike, instead of failing the write that records it.
fn escapes_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            // Every backslash in valid JSON starts an escape: `\\` is one escaped backslash, so
            // stepping over pairs keeps `\\u0000` (a backslash, then text) from matching.
            if bytes[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Deserialises JSON, naming the field that is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Tracking the path costs on every field; only a body that fails needs it, so parse plainly
    // first and again, tracked, to explain a failure.
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => parse_json_tracked(bytes),
    }
}

fn parse_json_tracked<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let inner = e.inner();
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request("invalid_json", format!("malformed JSON: {inner}"));
        }
        let message = inner.to_string();
        // serde reports a missing field at its parent's path (an unknown one at its own); name the
        // field itself.
        let field = quoted_name(&message, "missing field `")
            .map(|name| {
                if path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                }
            })
            .unwrap_or(path);
        ApiError::bad_request("invalid_body", message).with_field(field)
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn quoted_name<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// A query string, with the bad parameter named.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request("invalid_query", format!("query string: {e}")))
    }
}

/// Parses an id from the URL path.
pub fn path_id<T: FromStr>(raw: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e: T::Err| {
        ApiError::bad_request("invalid_id", format!("id `{raw}`: {e}")).with_field("id")
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = bearer_token(header)?;
        use tracing::Instrument;
        let span = tracing::debug_span!("identity", gen_ai.agent.id = tracing::field::Empty);
        let caller = state
            .verifier
            .verify(token)
            .instrument(span.clone())
            .await?;
        span.record("gen_ai.agent.id", caller.agent.as_str());
        Ok(caller)
    }
}

/// The `Idempotency-Key` header, if sent (400 when it is not a key).
pub struct IdempotencyKeyHeader(pub Option<crate::decision::IdempotencyKey>);

/// The response header that marks an answer given again for a repeated `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .map_err(|_| crate::decision::BadIdempotencyKey)?
            .parse()?;
        Ok(Self(Some(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::escapes_nul;

    #[test]
    fn only_an_escaped_nul_is_found() {
        assert!(escapes_nul(br#"{"a": "x\u0000y"}"#));
        assert!(escapes_nul(br#"{"a\u0000": 1}"#));
        assert!(escapes_nul(br#"{"a": "\\\u0000"}"#));
        assert!(!escapes_nul(br#"{"a": "\\u0000"}"#));
        assert!(!escapes_nul(br#"{"a": "\u0001 u0000"}"#));
        assert!(!escapes_nul(br#"{"a": "trailing \"#));
    }
}
