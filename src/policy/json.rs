//! JSON as agents and LLMs write it, as Cedar values. One mapping for every place a caller's JSON
//! becomes a Cedar context: decisions, replay, AuthZEN (through the pipeline) and policy tests.
//!
//! Cedar's own JSON format has no floats and no nulls, and tool arguments written by a model have
//! both. The rules:
//! - an integer in i64's range is a `Long`;
//! - any other number is a `decimal` when its shortest decimal form has at most four fractional
//!   digits and lies within decimal's range (±922337203685477.5807): `50.5` is
//!   `decimal("50.5")`, `1e3` is `decimal("1000.0")`;
//! - a number that fits neither (`0.12345`, `1e300`, `2^64 - 1`, or `0.1 + 0.2` as a double holds it)
//!   is a `String`, the number's shortest round-trip text (`"0.12345"`, `"1e+300"`,
//!   `"18446744073709551615"`, `"0.30000000000000004"`): policies can compare it only as text,
//!   and the schema should not declare such an argument a number;
//! - `null` is absent: an attribute whose value is null is left out of its record (a policy
//!   tests `has`), a null element is left out of its set.
//!
//! Objects with a key starting `__` are Cedar's escapes (`__entity`, `__extn`) and are left to
//! Cedar's parser as they are. The caller's JSON itself is never changed: the ledger records the
//! request exactly as sent.

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Number, Value};

/// Cedar decimals are i64s counting ten-thousandths.
const DECIMAL_SCALE: i128 = 10_000;
const DECIMAL_DIGITS: i64 = 4;

/// What a JSON number is in Cedar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CedarNumber {
    Long(i64),
    /// Cedar decimal text: digits, a dot, one to four digits.
    Decimal(String),
    /// Fits neither: its shortest JSON text.
    Text(String),
}

pub fn number(n: &Number) -> CedarNumber {
    if let Some(i) = n.as_i64() {
        return CedarNumber::Long(i);
    }
    let text = n.to_string();
    match decimal_text(&text) {
        Some(d) => CedarNumber::Decimal(d),
        None => CedarNumber::Text(text),
    }
}

/// `text`, a JSON number, as Cedar decimal text if it is exactly one.
fn decimal_text(text: &str) -> Option<String> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = whole.chars().chain(fraction.chars()).collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // value = digits × 10^(exponent - fraction digits); drop trailing zeros so that `1.50` and
    // `1.5` read the same and `1e3` has no fractional digits.
    let mut power = exponent.checked_sub(fraction.len() as i64)?;
    let mut digits = digits.trim_start_matches('0').to_owned();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
        power += 1;
    }
    if digits.is_empty() {
        digits.push('0');
    }
    // Scaled by 10^4 it must be an integer that fits an i64.
    let shift = power.checked_add(DECIMAL_DIGITS)?;
    if shift < 0 || digits.len() as i64 + shift > 20 {
        return None;
    }
    let mut scaled: i128 = digits.parse().ok()?;
    for _ in 0..shift {
        scaled = scaled.checked_mul(10)?;
    }
    if negative {
        scaled = -scaled;
    }
    let scaled = i64::try_from(scaled).ok()?;
    let sign = if scaled < 0 { "-" } else { "" };
    let magnitude = i128::from(scaled).abs();
    let mut fraction = format!("{:04}", magnitude % DECIMAL_SCALE);
    while fraction.len() > 1 && fraction.ends_with('0') {
        fraction.pop();
    }
    Some(format!("{sign}{}.{fraction}", magnitude / DECIMAL_SCALE))
}

fn is_escape(fields: &Map<String, Value>) -> bool {
    fields.keys().any(|k| k.starts_with("__"))
}

/// `value` as a Cedar expression, or None where only Cedar's JSON parser knows the answer (the
/// `__entity` and `__extn` escapes), or where `value` is itself null.
pub fn restricted(value: &Value) -> Option<RestrictedExpression> {
    match value {
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => Some(match number(n) {
            CedarNumber::Long(i) => RestrictedExpression::new_long(i),
            CedarNumber::Decimal(d) => RestrictedExpression::new_decimal(d),
            CedarNumber::Text(t) => RestrictedExpression::new_string(t),
        }),
        Value::Array(items) => Some(RestrictedExpression::new_set(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(restricted)
                .collect::<Option<Vec<_>>>()?,
        )),
        Value::Object(fields) => {
            if is_escape(fields) {
                return None;
            }
            RestrictedExpression::new_record(record(fields)?).ok()
        }
        Value::Null => None,
    }
}

/// A record's fields as Cedar expressions, nulls left out; None as for [`restricted`].
pub fn record(fields: &Map<String, Value>) -> Option<Vec<(String, RestrictedExpression)>> {
    fields
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| Some((k.clone(), restricted(v)?)))
        .collect()
}

/// `value` in Cedar's JSON format, by the same rules: for Cedar's JSON parser (contexts with
/// escapes, policy test files). Escapes are passed through unchanged.
pub fn to_cedar_json(value: &Value) -> Value {
    match value {
        Value::Number(n) => match number(n) {
            CedarNumber::Long(i) => Value::from(i),
            CedarNumber::Decimal(d) => {
                serde_json::json!({ "__extn": { "fn": "decimal", "arg": d } })
            }
            CedarNumber::Text(t) => Value::String(t),
        },
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(to_cedar_json)
                .collect(),
        ),
        Value::Object(fields) if !is_escape(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), to_cedar_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(json: &str) -> CedarNumber {
        number(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn numbers_become_longs_decimals_or_text() {
        use CedarNumber::*;
        assert_eq!(of("50"), Long(50));
        assert_eq!(of("-9223372036854775808"), Long(i64::MIN));
        assert_eq!(of("50.5"), Decimal("50.5".into()));
        assert_eq!(of("50.0"), Decimal("50.0".into()));
        assert_eq!(of("-0.0001"), Decimal("-0.0001".into()));
        assert_eq!(of("1e3"), Decimal("1000.0".into()));
        assert_eq!(of("1.5e-2"), Decimal("0.015".into()));
        // f64 holds 922337203685477.5807 only as ...477.6, past the range; ...477.5 is exact.
        assert_eq!(of("922337203685477.5"), Decimal("922337203685477.5".into()));
        assert_eq!(of("922337203685477.5807"), Text("922337203685477.6".into()));
        assert_eq!(
            of("0.30000000000000004"),
            Text("0.30000000000000004".into())
        );
        assert_eq!(of("0.00001"), Text("0.00001".into()));
        assert_eq!(of("0.12345"), Text("0.12345".into()));
        assert_eq!(of("1e300"), Text("1e+300".into()));
        assert_eq!(
            of("18446744073709551615"),
            Text("18446744073709551615".into())
        );
        assert_eq!(
            of("9223372036854775808"),
            Text("9223372036854775808".into())
        );
        assert_eq!(of("922337203685478.0"), Text("922337203685478.0".into()));
    }

    #[test]
    fn every_decimal_made_is_one_cedar_reads() {
        for text in ["50.5", "-1.25", "1e3", "0.0001", "123456789.1234", "1e14"] {
            let CedarNumber::Decimal(d) = of(text) else {
                panic!("{text}")
            };
            let parsed = cedar_policy::Context::from_pairs([(
                "x".to_owned(),
                RestrictedExpression::new_decimal(&d),
            )]);
            assert!(parsed.is_ok(), "{text} -> {d}: {parsed:?}");
        }
    }

    #[test]
    fn nulls_are_absent_at_every_depth() {
        let value = serde_json::json!({"a": null, "b": {"c": null, "d": 1}, "e": [null, 2.5]});
        assert_eq!(
            to_cedar_json(&value),
            serde_json::json!({"b": {"d": 1}, "e": [{"__extn": {"fn": "decimal", "arg": "2.5"}}]})
        );
        let fields = value.as_object().unwrap();
        let names: Vec<String> = record(fields)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(names, ["b", "e"]);
    }

    #[test]
    fn escapes_are_left_to_cedar() {
        let escape = serde_json::json!({"__entity": {"type": "User", "id": "alice"}});
        assert!(restricted(&escape).is_none());
        assert_eq!(to_cedar_json(&escape), escape);
    }
}
