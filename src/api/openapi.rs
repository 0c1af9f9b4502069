//! The OpenAPI document as served at `/openapi.json`: what the handlers' annotations declare,
//! completed with what every operation can answer and the annotations leave out.
//!
//! Errors come from extractors and layers shared by every handler (a missing token, a body that
//! is not JSON or too large, a path id outside the id grammar, a timeout), so writing each of them
//! on each handler's annotation would be a hundred lines that drift. [`complete`] adds them from
//! what an operation takes: any operation but the health and discovery ones may answer 401, 403
//! and 503; one with path parameters 400 and 404; one with a query 400; one with a body 400, 413,
//! 415 and 422. AuthZEN operations answer errors as plain text, as that spec says.
//!
//! It also lets the registry's records be read back: `Agent` and `Tool` flatten a record that
//! refuses unknown fields (`additionalProperties: false`) next to their `id` and bookkeeping,
//! which a validator reading the `allOf` literally rejects. Inside an `allOf` the record is
//! inlined without that flag; the request bodies keep it.

use serde_json::{Map, Value, json};

/// The served document, from the one the annotations build.
pub fn complete(openapi: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(openapi).unwrap_or_else(|_| json!({}));
    let schemas = doc["components"]["schemas"].clone();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                if matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                    add_errors(path, operation);
                }
            }
        }
    }
    if let Some(components) = doc["components"]["schemas"].as_object_mut() {
        for schema in components.values_mut() {
            open_all_of(schema, &schemas);
        }
    }
    doc
}

const DESCRIPTIONS: &[(&str, &str)] = &[
    (
        "400",
        "malformed JSON, a wrong type, an unknown field or a bad parameter",
    ),
    ("401", "missing or invalid bearer token"),
    (
        "403",
        "the caller's roles or the control policy do not permit this",
    ),
    ("404", "no such resource"),
    ("413", "body larger than max_body_bytes"),
    ("415", "body not sent as application/json"),
    ("422", "a request the schema cannot read"),
    (
        "503",
        "storage or identity provider unavailable, or the request timed out",
    ),
];

fn add_errors(path: &str, operation: &mut Value) {
    if matches!(path, "/healthz" | "/readyz") || path.starts_with("/.well-known/") {
        return;
    }
    let params = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = |place: &str| params.iter().any(|p| p["in"] == place);
    let mut codes = vec!["401", "403", "503"];
    if has("path") {
        codes.extend(["400", "404"]);
    }
    if has("query") {
        codes.push("400");
    }
    if operation.get("requestBody").is_some() {
        codes.extend(["400", "413", "415", "422"]);
    }
    let plain = path.starts_with("/access/");
    let Some(responses) = operation["responses"].as_object_mut() else {
        return;
    };
    for code in codes {
        if responses.contains_key(code) {
            continue;
        }
        let description = DESCRIPTIONS
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("error", |(_, d)| d);
        let content = if plain {
            json!({"text/plain": {"schema": {"type": "string"}}})
        } else {
            json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}})
        };
        responses.insert(
            code.to_owned(),
            json!({"description": description, "content": content}),
        );
    }
}

/// Replaces each closed `$ref` inside an `allOf` (anywhere in `schema`) with an open copy.
fn open_all_of(schema: &mut Value, schemas: &Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(parts)) = map.get_mut("allOf") {
                for part in parts.iter_mut() {
                    if let Some(name) = part["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/schemas/"))
                        && let Some(Value::Object(target)) = schemas.get(name)
                        && target.get("additionalProperties") == Some(&Value::Bool(false))
                    {
                        let mut open: Map<String, Value> = target.clone();
                        open.remove("additionalProperties");
                        *part = Value::Object(open);
                    } else if let Value::Object(inline) = part {
                        inline.remove("additionalProperties");
                    }
                }
            }
            for value in map.values_mut() {
                open_all_of(value, schemas);
            }
        }
        Value::Array(items) => {
            for item in items {
                open_all_of(item, schemas);
            }
        }
        _ => {}
    }
}
