//! Points in time as Reins stores, answers and records them: UTC, whole milliseconds, always
//! written `YYYY-MM-DDTHH:MM:SS.mmmZ` (24 bytes).
//!
//! One width is what lets the store compare and sort times as text (and use its indices for
//! it): RFC 3339 allows `...:20Z`, `...:20.5Z` and `...:20.500Z` for nearby instants, and those do
//! not sort as strings. `Timestamp::parse` is the one parser (any RFC 3339 offset, fractions
//! beyond milliseconds truncated) and `Display` the one formatter; everything else in the crate
//! goes through them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant with millisecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// A text that is not an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an RFC 3339 time (e.g. 2026-11-30T06:00:00Z): {message}")]
pub struct TimestampError {
    text: String,
    message: String,
}

impl Timestamp {
    pub const UNIX_EPOCH: Self = Self(OffsetDateTime::UNIX_EPOCH);
    pub const MIN: Self = Self(time::macros::datetime!(0000-01-01 00:00:00 UTC));
    pub const MAX: Self = Self(time::macros::datetime!(9999-12-31 23:59:59.999 UTC));

    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// `t` in UTC, truncated to the millisecond. Times outside the years 0000-9999 are clamped
    /// to them, so that every `Timestamp` has the fixed width.
    pub fn from_datetime(t: OffsetDateTime) -> Self {
        let t = t.to_offset(time::UtcOffset::UTC);
        let t = t
            .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
            .unwrap_or(t);
        let t = t.clamp(Self::MIN.0, Self::MAX.0);
        Self(t)
    }

    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Self::from_datetime)
            .map_err(|e| TimestampError {
                text: text.chars().take(64).collect(),
                message: e.to_string(),
            })
    }

    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }

    /// `self + d`, clamped to the representable range.
    pub fn plus(self, d: std::time::Duration) -> Self {
        let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
        Self::from_datetime(self.0.checked_add(d).unwrap_or(Self::MAX.0))
    }

    /// `self - d`, clamped to the representable range.
    pub fn minus(self, d: std::time::Duration) -> Self {
        let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
        Self::from_datetime(self.0.checked_sub(d).unwrap_or(Self::MIN.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("UTC, whole milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`."))
            .examples(["2026-11-30T06:00:00.000Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

// Stored as text in every backend: the fixed width makes text order time order.
impl<DB: sqlx::Database> sqlx::Type<DB> for Timestamp
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }
    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for Timestamp
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        self.to_string().encode_by_ref(buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Timestamp
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <String as sqlx::Decode<DB>>::decode(value)?;
        Ok(Self::parse(&text)?)
    }
}

impl rusqlite::ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::from(self.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_width_for_every_instant() {
        for (text, shown) in [
            ("2026-11-30T06:00:00Z", "2026-11-30T06:00:00.000Z"),
            ("2026-11-30T06:00:00.5Z", "2026-11-30T06:00:00.500Z"),
            ("2026-11-30T06:00:00.123456789Z", "2026-11-30T06:00:00.123Z"),
            ("2026-11-30T07:00:00.010+01:00", "2026-11-30T06:00:00.010Z"),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000Z"),
        ] {
            let t = Timestamp::parse(text).unwrap();
            assert_eq!(t.to_string(), shown, "{text}");
            assert_eq!(Timestamp::parse(shown).unwrap(), t);
        }
        assert_eq!(Timestamp::now().to_string().len(), 24);
    }

    #[test]
    fn text_order_is_time_order() {
        let a = Timestamp::parse("2026-11-30T06:00:00Z").unwrap();
        let b = Timestamp::parse("2026-11-30T06:00:00.5Z").unwrap();
        let c = Timestamp::parse("2026-11-30T06:00:01Z").unwrap();
        assert!(a < b && b < c);
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
    }

    #[test]
    fn not_a_time_names_the_text() {
        let e = Timestamp::parse("yesterday").unwrap_err();
        assert!(e.to_string().contains("`yesterday`"), "{e}");
        assert!(Timestamp::parse("2026-11-30").is_err());
    }

    #[test]
    fn arithmetic_clamps() {
        let t = Timestamp::parse("9999-12-31T23:00:00Z").unwrap();
        assert_eq!(
            t.plus(std::time::Duration::from_secs(u64::MAX)).to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            Timestamp::UNIX_EPOCH
                .minus(std::time::Duration::from_secs(u64::MAX))
                .to_string(),
            "0000-01-01T00:00:00.000Z"
        );
    }
}
