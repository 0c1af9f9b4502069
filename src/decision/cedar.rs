//! The Cedar context of a request: the caller's JSON plus what Reins fills in itself (the
//! delegating user, the session, a granted approval, usage counts), built as Cedar expressions.
use super::*;
use crate::ids::ApprovalId;
use crate::policy::json::{restricted, to_cedar_json};
use crate::policy::reads::Reads;
use crate::usage::{Amount, Calls, Seen};

/// Context keys Reins fills in itself; a caller may not set them.
const RESERVED_CONTEXT: &[&str] = &[
    "user",
    "session_id",
    "approval",
    "intent_present",
    "usage",
    "session",
];

/// The Cedar context of a request: the caller's, plus what Reins knows (delegating user, session,
/// a granted approval as `(id, approver)`).
///
/// Built as Cedar expressions straight from the parsed JSON: going through Cedar's JSON parser
/// instead re-reads every value through serde's untagged-enum probing (entity and extension
/// escapes) and cost more than evaluating the policies. Values that need that parser (`__entity`
/// or `__extn` escapes, and anything Cedar refuses, such as floats and nulls) still take it, so
/// both paths accept and reject exactly the same contexts.
pub(super) fn cedar_context(
    user: Option<EntityUid>,
    request: &DecisionRequest,
    approval: Option<(ApprovalId, &str)>,
    usage: Option<(&Seen, &Reads)>,
) -> Result<Context, RequestError> {
    let given = request.context.as_ref();
    if let Some(key) = RESERVED_CONTEXT
        .iter()
        .find(|k| given.is_some_and(|c| c.contains_key(**k)))
    {
        return Err(RequestError::new(
            format!("context.{key}"),
            "is set by Reins and cannot be sent",
        ));
    }
    let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(4);
    if let Some(given) = given {
        // A null is an absent attribute (crate::policy::json).
        for (key, value) in given.iter().filter(|(_, v)| !v.is_null()) {
            match restricted(value) {
                Some(expression) => pairs.push((key.clone(), expression)),
                None => return cedar_context_from_json(user, request, approval, usage),
            }
        }
    }
    if given.is_none_or(|c| c.get("args").is_none_or(Value::is_null)) {
        pairs.push((
            "args".into(),
            RestrictedExpression::new_record([]).map_err(context_error)?,
        ));
    }
    if let Some(user) = user {
        pairs.push(("user".into(), RestrictedExpression::new_entity_uid(user)));
    }
    if let Some(session) = &request.session_id {
        pairs.push((
            "session_id".into(),
            RestrictedExpression::new_string(session.clone()),
        ));
    }
    if request.intent.is_some() {
        pairs.push((
            "intent_present".into(),
            RestrictedExpression::new_bool(true),
        ));
    }
    if let Some((id, approver)) = approval {
        let record = RestrictedExpression::new_record([
            (
                "id".to_owned(),
                RestrictedExpression::new_string(id.to_string()),
            ),
            (
                "approver".to_owned(),
                RestrictedExpression::new_string(approver.to_owned()),
            ),
        ])
        .map_err(context_error)?;
        pairs.push(("approval".into(), record));
    }
    if let Some((seen, reads)) = usage {
        usage_pairs(seen, reads, &mut pairs).map_err(context_error)?;
    }
    Context::from_pairs(pairs).map_err(context_error)
}

/// `context.usage` and `context.session` (schemas/reins.cedarschema documents each name), with
/// only the parts `reads` says the policies read ([`crate::policy::reads`]): Cedar evaluates every
/// record it is given, and no policy can tell an unread part from an absent one.
fn usage_pairs(
    seen: &Seen,
    reads: &Reads,
    pairs: &mut Vec<(String, RestrictedExpression)>,
) -> Result<(), cedar_policy::ExpressionConstructionError> {
    type Fields = Vec<(String, RestrictedExpression)>;
    let long = |n: i64| RestrictedExpression::new_long(n);
    let decimal = |a: Amount| RestrictedExpression::new_decimal(a.to_decimal_text());
    // The fields of one record that `reads` wants, each made only then.
    fn record<T: Copy>(
        reads: &Reads,
        fields: &[(&str, T)],
        make: impl Fn(T) -> RestrictedExpression,
    ) -> Result<RestrictedExpression, cedar_policy::ExpressionConstructionError> {
        RestrictedExpression::new_record(
            fields
                .iter()
                .filter(|(name, _)| reads.wants(name))
                .map(|(name, v)| ((*name).to_owned(), make(*v))),
        )
    }
    let calls = |reads: &Reads, c: &Calls| {
        record(
            reads,
            &[
                ("calls_1m", c.calls_1m),
                ("calls_1h", c.calls_1h),
                ("calls_24h", c.calls_24h),
            ],
            long,
        )
    };
    if let Some(reads) = reads.of("usage") {
        let mut usage: Fields = Vec::new();
        if let Some(r) = reads.of("agent_tool") {
            usage.push(("agent_tool".into(), calls(r, &seen.agent_tool)?));
        }
        if let Some(r) = reads.of("agent") {
            usage.push(("agent".into(), calls(r, &seen.agent)?));
        }
        if let (Some(r), Some(user)) = (reads.of("user"), &seen.user) {
            usage.push(("user".into(), calls(r, user)?));
        }
        if let (Some(reads), Some(spend)) = (reads.of("spend"), &seen.spend) {
            let sums = |reads: &Reads, s: &crate::usage::Sums| {
                record(
                    reads,
                    &[
                        ("spent_1m", s.spent_1m),
                        ("spent_1h", s.spent_1h),
                        ("spent_24h", s.spent_24h),
                        ("after_1m", s.after_1m),
                        ("after_1h", s.after_1h),
                        ("after_24h", s.after_24h),
                    ],
                    decimal,
                )
            };
            let mut fields: Fields = Vec::new();
            if reads.wants("currency") {
                fields.push((
                    "currency".into(),
                    RestrictedExpression::new_string(spend.currency.clone()),
                ));
            }
            if reads.wants("amount") {
                fields.push(("amount".into(), decimal(spend.amount)));
            }
            if let Some(r) = reads.of("agent") {
                fields.push(("agent".into(), sums(r, &spend.agent)?));
            }
            if let (Some(r), Some(user)) = (reads.of("user"), &spend.user) {
                fields.push(("user".into(), sums(r, user)?));
            }
            if let (Some(r), Some(session)) = (reads.of("session"), &spend.session) {
                fields.push((
                    "session".into(),
                    record(
                        r,
                        &[("spent", session.spent), ("after", session.after)],
                        decimal,
                    )?,
                ));
            }
            usage.push(("spend".into(), RestrictedExpression::new_record(fields)?));
        }
        pairs.push(("usage".into(), RestrictedExpression::new_record(usage)?));
    }
    if let (Some(reads), Some(session)) = (reads.of("session"), &seen.session) {
        pairs.push((
            "session".into(),
            record(
                reads,
                &[
                    ("steps", session.steps),
                    ("tool_calls", session.tool_calls),
                    ("identical_calls", session.identical_calls),
                ],
                long,
            )?,
        ));
    }
    Ok(())
}

pub(super) fn context_error(e: impl std::fmt::Display) -> RequestError {
    RequestError::new("context", e.to_string())
}

pub(super) fn resource_error(e: impl std::fmt::Display) -> RequestError {
    RequestError::new("resource", e.to_string())
}

/// [`cedar_context`] through Cedar's JSON parser: for contexts with escapes, and for the errors
/// Cedar reports on values it cannot take.
pub(super) fn cedar_context_from_json(
    user: Option<EntityUid>,
    request: &DecisionRequest,
    approval: Option<(ApprovalId, &str)>,
    usage: Option<(&Seen, &Reads)>,
) -> Result<Context, RequestError> {
    let mut context = match request
        .context
        .as_ref()
        .map(|c| to_cedar_json(&Value::Object(c.clone())))
    {
        Some(Value::Object(c)) => c,
        _ => Map::new(),
    };
    context
        .entry("args")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(user) = user {
        context.insert(
            "user".into(),
            serde_json::json!({ "__entity": {
                "type": user.type_name().to_string(),
                "id": user.id().unescaped(),
            } }),
        );
    }
    if let Some(session) = &request.session_id {
        context.insert("session_id".into(), Value::String(session.clone()));
    }
    if request.intent.is_some() {
        context.insert("intent_present".into(), Value::Bool(true));
    }
    if let Some((id, approver)) = approval {
        context.insert(
            "approval".into(),
            serde_json::json!({ "id": id.to_string(), "approver": approver }),
        );
    }
    let context = Context::from_json_value(Value::Object(context), None).map_err(context_error)?;
    match usage {
        None => Ok(context),
        Some((seen, reads)) => {
            let mut pairs = Vec::new();
            usage_pairs(seen, reads, &mut pairs).map_err(context_error)?;
            context.merge(pairs).map_err(context_error)
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::decision) fn request(context: Value) -> DecisionRequest {
        DecisionRequest {
            action: "invoke".into(),
            resource: ResourceRef {
                kind: "Tool".into(),
                id: "search.web".into(),
                attributes: None,
            },
            context: context.as_object().cloned(),
            session_id: Some("s-1".into()),
            approval_id: None,
            intent: None,
            trace: None,
            compensates: None,
        }
    }

    fn user() -> Option<EntityUid> {
        Some(EntityUid::from_type_name_and_id(
            EntityTypeName::from_str("User").unwrap(),
            EntityId::new("alice"),
        ))
    }

    /// The direct build must give the very context Cedar's JSON parser gives.
    #[test]
    fn contexts_built_directly_equal_those_parsed_from_json() {
        let contexts = [
            json!({}),
            json!({"args": {}}),
            json!({"args": {"amount": 1200, "currency": "EUR", "neg": -7, "max": i64::MAX}}),
            json!({"args": {"flags": ["a", "b", "a"], "nested": {"deep": {"ok": true}}}, "extra": false}),
            json!({"args": {"list": [[1, 2], [], [{"k": "v"}]]}, "n": 0}),
            // As LLMs write them: floats, nulls, numbers past Long and decimal.
            json!({"args": {"amount": 50.5, "tip": 1e3, "rate": 0.12345, "huge": 1e300, "big": u64::MAX}}),
            json!({"args": {"note": null, "nested": {"a": null, "b": [null, 2.5, 3]}}, "x": null}),
            json!({"args": null}),
        ];
        for context in contexts {
            let request = request(context.clone());
            for approval in [None, Some((ApprovalId::new(), "carol"))] {
                let direct = cedar_context(user(), &request, approval, None).unwrap();
                let parsed = cedar_context_from_json(user(), &request, approval, None).unwrap();
                assert_eq!(direct, parsed, "{context}");
            }
        }
    }

    /// Escapes take Cedar's parser: same answers, same errors.
    #[test]
    fn escapes_and_refused_values_go_through_cedars_parser() {
        let escaped = request(json!({"args": {
            "owner": {"__entity": {"type": "User", "id": "bob"}},
            "limit": {"__extn": {"fn": "decimal", "arg": "1.50"}},
        }}));
        assert_eq!(
            cedar_context(None, &escaped, None, None).unwrap(),
            cedar_context_from_json(None, &escaped, None, None).unwrap()
        );
        {
            let refused = json!({"args": {"bad": {"__extn": {"fn": "decimal", "arg": "x"}}}});
            let request = request(refused.clone());
            let direct = cedar_context(None, &request, None, None).unwrap_err();
            let parsed = cedar_context_from_json(None, &request, None, None).unwrap_err();
            assert_eq!(direct, parsed, "{refused}");
            assert_eq!(direct.field, "context");
        }
        for reserved in RESERVED_CONTEXT {
            let request = request(json!({ *reserved: "x" }));
            assert_eq!(
                cedar_context(None, &request, None, None).unwrap_err().field,
                format!("context.{reserved}")
            );
        }
    }
}
