//! Usage that policies read: how many calls an agent, an agent on one tool, a delegating user and
//! a session made, and how much they spent, over sliding windows, as `context.usage` and
//! `context.session` of the decision being made.
//!
//! Only allowed decisions count (a denied call spent nothing). A decision reads the counts and is
//! counted under one lease on its keys ([`Usage::begin`] .. [`Lease::finish`]), held across its
//! Cedar evaluation, so two concurrent calls of one agent cannot both be allowed as the last call
//! under a limit: the limit is exact, on one server ([`local`]) and across replicas on PostgreSQL
//! ([`shared`]). A decision whose ledger append then fails is refunded ([`Usage::refund`]): until
//! then others saw one call more than happened, which can only deny, never over-allow.
//!
//! Windows slide by their bucket: the minute by the second, the hour and the day by the minute. A
//! call counts from its bucket for at least the full window and at most one bucket longer, the
//! safe side for a limit. Session counts have no window; a session's state is forgotten 24 hours
//! after its last counted call.
//!
//! What a decision saw is recorded in its ledger entry ([`Recorded`]), so replay evaluates with
//! the same numbers and an auditor can see why a call was `rate_limited`.

pub mod clock;
pub mod entry;
mod local;
mod shared;
mod window;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use clock::Clock;
pub use window::{Totals, WINDOWS};

/// The windows' lengths, in milliseconds: a minute, an hour, a day.
pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("usage counts: {0}")]
    Database(#[from] sqlx::Error),
    #[error("usage counts: {0}")]
    Encode(String),
}

/// A money amount as Cedar's `decimal` holds it: an integer count of ten-thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(pub i64);

impl Amount {
    const SCALE: i64 = 10_000;

    /// Decimal text with at most four fractional digits, within Cedar's `decimal` range.
    pub fn parse(text: &str) -> Option<Self> {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || fraction.len() > 4
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let mut part: i64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().ok()?
        };
        for _ in fraction.len()..4 {
            part *= 10;
        }
        let value = whole.checked_mul(Self::SCALE)?.checked_add(part)?;
        Some(Self(if negative { -value } else { value }))
    }

    /// A JSON argument as a metered amount: a number or numeric text, in `minor_units` (2: the
    /// value is in cents).
    pub fn from_json(value: &Value, minor_units: u8) -> Option<Self> {
        let text = match value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_owned(),
            _ => return None,
        };
        let amount = Self::parse(&text)?;
        if minor_units == 0 {
            return Some(amount);
        }
        // 1234 cents is 12.34: the value must be whole in minor units.
        let unit = 10i64.pow(u32::from(minor_units));
        if amount.0 % Self::SCALE != 0 {
            return None;
        }
        Some(Self(amount.0 / unit))
    }

    pub fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// What Cedar's `decimal("...")` takes: at least one fractional digit, at most four.
    pub fn to_decimal_text(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / Self::SCALE as u64;
        let fraction = format!("{:04}", abs % Self::SCALE as u64);
        let fraction = fraction.trim_end_matches('0');
        let fraction = if fraction.is_empty() { "0" } else { fraction };
        format!("{sign}{whole}.{fraction}")
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_decimal_text())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a decimal amount")))
    }
}

/// What a tool's registry record says to meter: JSON pointers into the call's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metered {
    /// The amount's pointer in `args`, e.g. `/amount`.
    pub amount: String,
    /// The currency's pointer in `args`, e.g. `/currency`. Without it (or when the call leaves it
    /// out) the amount counts under the currency `""`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Decimal places the amount is given in: 2 when `1234` means 12.34. Default 0 (the amount
    /// is the value itself; it may have up to four fractional digits).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor_units: u8,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Metered {
    /// Why the declaration cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let pointer = |p: &str| p.is_empty() || p.starts_with('/');
        if !pointer(&self.amount) {
            return Some(format!("`{}` is not a JSON pointer", self.amount));
        }
        if let Some(c) = self.currency.as_deref().filter(|c| !pointer(c)) {
            return Some(format!("`{c}` is not a JSON pointer"));
        }
        (self.minor_units > 4).then(|| "minor_units is at most 4".to_owned())
    }
}

/// A metered call's spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    pub currency: String,
    pub amount: Amount,
}

/// What one decision would count, and under which keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub agent: String,
    /// The tool's id (`Tool` resources), else `type::id`.
    pub tool: String,
    pub user: Option<String>,
    pub session: Option<String>,
    /// SHA-256 of the canonical JSON of the arguments: identical calls share it. Empty without
    /// a session (nothing reads it).
    pub digest: String,
    pub spend: Option<Spend>,
}

/// The `tool` a call of resource `kind`/`id` counts under: the id of a `Tool`, else `kind::id`.
pub fn tool_key(kind: &str, id: &str) -> String {
    if kind == "Tool" {
        id.to_owned()
    } else {
        format!("{kind}::{id}")
    }
}

/// A metered amount the call's arguments do not give as a number (HTTP 422).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct MeterError {
    pub pointer: String,
    pub message: String,
}

impl Call {
    /// The call a request makes; `metered` from its tool's registry record.
    pub fn new(
        agent: &str,
        tool: String,
        user: Option<&str>,
        session: Option<&str>,
        args: Option<&Value>,
        metered: Option<&Metered>,
    ) -> Result<Self, MeterError> {
        // Only a session's identical-call count reads the digest: no session, no hashing.
        let digest = if session.is_none() {
            String::new()
        } else {
            let empty = Value::Object(Default::default());
            let args = args.filter(|a| !a.is_null()).unwrap_or(&empty);
            let bytes = crate::tlog::canonical::to_vec(args).map_err(|e| MeterError {
                pointer: "args".into(),
                message: e.to_string(),
            })?;
            hex::encode(Sha256::digest(&bytes))
        };
        let spend = match (metered, args) {
            (Some(m), Some(args)) => match args.pointer(&m.amount).filter(|v| !v.is_null()) {
                None => None,
                Some(value) => {
                    let amount =
                        Amount::from_json(value, m.minor_units).ok_or_else(|| MeterError {
                            pointer: format!("args{}", m.amount),
                            message: format!(
                                "a metered amount must be a number with at most {} fractional digits{}",
                                4 - m.minor_units.min(4),
                                if m.minor_units > 0 { " (it is in minor units)" } else { "" }
                            ),
                        })?;
                    let currency = m
                        .currency
                        .as_deref()
                        .and_then(|p| args.pointer(p))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
                    if currency.len() > 16 {
                        return Err(MeterError {
                            pointer: format!("args{}", m.currency.as_deref().unwrap_or_default()),
                            message: "a currency is at most 16 bytes".into(),
                        });
                    }
                    Some(Spend { currency, amount })
                }
            },
            _ => None,
        };
        Ok(Self {
            agent: agent.to_owned(),
            tool,
            user: user.map(str::to_owned),
            session: session.map(str::to_owned),
            digest,
            spend,
        })
    }

    /// Every key this call reads and, when allowed, counts.
    pub fn keys(&self) -> Vec<Key> {
        let a = &self.agent;
        let mut keys = vec![
            Key::Agent(a.clone()),
            Key::AgentTool(a.clone(), self.tool.clone()),
        ];
        if let Some(u) = &self.user {
            keys.push(Key::User(u.clone()));
        }
        if let Some(s) = &self.session {
            keys.push(Key::Session(a.clone(), s.clone()));
            keys.push(Key::SessionTool(a.clone(), s.clone(), self.tool.clone()));
            keys.push(Key::SessionCall(
                a.clone(),
                s.clone(),
                self.tool.clone(),
                self.digest.clone(),
            ));
        }
        if let Some(spend) = &self.spend {
            let c = &spend.currency;
            keys.push(Key::AgentSpend(a.clone(), c.clone()));
            if let Some(u) = &self.user {
                keys.push(Key::UserSpend(u.clone(), c.clone()));
            }
            if let Some(s) = &self.session {
                keys.push(Key::SessionSpend(a.clone(), s.clone(), c.clone()));
            }
        }
        keys
    }

    /// The amount each key counts when the call is allowed.
    fn amount(&self) -> Amount {
        self.spend.as_ref().map(|s| s.amount).unwrap_or_default()
    }
}

/// One counter. Agent keys live with their agent, user keys with their user ([`Key::user`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Key {
    Agent(String),
    AgentTool(String, String),
    User(String),
    Session(String, String),
    SessionTool(String, String, String),
    SessionCall(String, String, String, String),
    AgentSpend(String, String),
    UserSpend(String, String),
    SessionSpend(String, String, String),
}

impl Key {
    /// Whether the key counts over windows (else over its session's life).
    pub fn windowed(&self) -> bool {
        matches!(
            self,
            Key::Agent(_)
                | Key::AgentTool(..)
                | Key::User(_)
                | Key::AgentSpend(..)
                | Key::UserSpend(..)
        )
    }

    /// What of a call's amount this key counts: all of it for a spend key, nothing for a calls
    /// key.
    pub fn share(&self, amount: Amount) -> Amount {
        match self {
            Key::AgentSpend(..) | Key::UserSpend(..) | Key::SessionSpend(..) => amount,
            _ => Amount(0),
        }
    }

    /// The user a user-scoped key belongs to.
    fn user(&self) -> Option<&str> {
        match self {
            Key::User(u) | Key::UserSpend(u, _) => Some(u),
            _ => None,
        }
    }

    /// A stable text form: the database's key column.
    pub fn encode(&self) -> String {
        // JSON: unambiguous whatever the ids hold.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Calls over the three windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    pub calls_1m: i64,
    pub calls_1h: i64,
    pub calls_24h: i64,
}

/// A session so far (allowed calls before this one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSeen {
    /// Calls of any tool.
    pub steps: i64,
    /// Calls of this tool.
    pub tool_calls: i64,
    /// Calls of this tool with the same canonical arguments.
    pub identical_calls: i64,
}

/// Spend over the windows in the call's currency: before this call (`spent_*`) and with it
/// (`after_*`), since Cedar's decimals compare but do not add.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sums {
    pub spent_1m: Amount,
    pub spent_1h: Amount,
    pub spent_24h: Amount,
    pub after_1m: Amount,
    pub after_1h: Amount,
    pub after_24h: Amount,
}

impl Sums {
    /// What was spent in each window before the call (`spent`, [`WINDOWS`] order), and with its
    /// `amount`.
    pub fn new(spent: [Amount; 3], amount: Amount) -> Self {
        let [spent_1m, spent_1h, spent_24h] = spent;
        Self {
            spent_1m,
            spent_1h,
            spent_24h,
            after_1m: spent_1m.saturating_add(amount),
            after_1h: spent_1h.saturating_add(amount),
            after_24h: spent_24h.saturating_add(amount),
        }
    }
}

/// A session's spend in the call's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSums {
    pub spent: Amount,
    pub after: Amount,
}

impl SessionSums {
    pub fn new(spent: Amount, amount: Amount) -> Self {
        Self {
            spent,
            after: spent.saturating_add(amount),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendSeen {
    pub currency: String,
    /// This call's amount.
    pub amount: Amount,
    pub agent: Sums,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Sums>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSums>,
}

/// What one decision saw: `context.usage` (`agent_tool`, `agent`, `user`, `spend`) and
/// `context.session`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub agent_tool: Calls,
    pub agent: Calls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Calls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionSeen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<SpendSeen>,
    /// For `@retry`: per windowed scope (`agent`, `agent_tool`, `user`, `spend.agent`,
    /// `spend.user`), when each window's oldest counted call leaves it (ms before `seen_at`).
    /// Not recorded.
    #[serde(skip)]
    pub leaves: Vec<(&'static str, [Option<i64>; 3])>,
}

impl Seen {
    /// Built from the totals of `call.keys()`, in that order.
    fn of(call: &Call, keys: &[Key], totals: &[Totals], now_ms: i64) -> Self {
        let mut seen = Seen::default();
        let mut session = SessionSeen::default();
        let mut spend = call.spend.as_ref().map(|s| SpendSeen {
            currency: s.currency.clone(),
            amount: s.amount,
            agent: Sums::default(),
            user: None,
            session: None,
        });
        let left = |t: &Totals| t.leaves_at.map(|at| at.map(|at| (at - now_ms).max(0)));
        let calls = |t: &Totals| Calls {
            calls_1m: t.calls[0],
            calls_1h: t.calls[1],
            calls_24h: t.calls[2],
        };
        let amount = call.amount();
        let sums = |t: &Totals| Sums::new(t.amount, amount);
        for (key, t) in keys.iter().zip(totals) {
            match key {
                Key::Agent(_) => {
                    seen.agent = calls(t);
                    seen.leaves.push(("agent", left(t)));
                }
                Key::AgentTool(..) => {
                    seen.agent_tool = calls(t);
                    seen.leaves.push(("agent_tool", left(t)));
                }
                Key::User(_) => {
                    seen.user = Some(calls(t));
                    seen.leaves.push(("user", left(t)));
                }
                Key::Session(..) => session.steps = t.total_calls,
                Key::SessionTool(..) => session.tool_calls = t.total_calls,
                Key::SessionCall(..) => session.identical_calls = t.total_calls,
                Key::AgentSpend(..) => {
                    if let Some(s) = &mut spend {
                        s.agent = sums(t);
                        seen.leaves.push(("spend.agent", left(t)));
                    }
                }
                Key::UserSpend(..) => {
                    if let Some(s) = &mut spend {
                        s.user = Some(sums(t));
                        seen.leaves.push(("spend.user", left(t)));
                    }
                }
                Key::SessionSpend(..) => {
                    if let Some(s) = &mut spend {
                        s.session = Some(SessionSums::new(t.total_amount, amount));
                    }
                }
            }
        }
        seen.session = call.session.is_some().then_some(session);
        seen.spend = spend;
        seen
    }

    /// Every counter `@retry` may name.
    pub fn counters() -> impl Iterator<Item = String> {
        let windows = || WINDOWS.iter().map(|(suffix, _)| *suffix);
        let calls = ["agent", "agent_tool", "user"]
            .into_iter()
            .flat_map(move |scope| windows().map(move |w| format!("{scope}.calls_{w}")));
        let spend = ["agent", "user"].into_iter().flat_map(move |scope| {
            ["spent", "after"]
                .into_iter()
                .flat_map(move |kind| windows().map(move |w| format!("spend.{scope}.{kind}_{w}")))
        });
        calls.chain(spend)
    }

    /// Seconds until the counter named by a policy's `@retry` (`agent.calls_1m`) drops, rounded
    /// up; None for an unknown or unwindowed counter, or one with nothing counted.
    pub fn retry_after(&self, counter: &str) -> Option<u64> {
        // `agent.calls_1m`, `spend.user.after_24h`: the scope, then the field's window.
        let (scope, field) = counter.rsplit_once('.')?;
        let (kind, window) = field.rsplit_once('_')?;
        let valid = match scope {
            "agent" | "agent_tool" | "user" => kind == "calls",
            "spend.agent" | "spend.user" => kind == "spent" || kind == "after",
            _ => false,
        };
        let window = WINDOWS.iter().position(|(suffix, _)| *suffix == window)?;
        let (_, leaves) = self.leaves.iter().find(|(s, _)| valid && *s == scope)?;
        leaves[window].map(|ms| (ms as u64).div_ceil(1000).max(1))
    }
}

/// What a decision's ledger entry records about usage: what it saw and, when it was counted, what
/// it counted (so a restart can rebuild the windows from the ledger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    #[serde(flatten)]
    pub seen: Seen,
    /// Present when the decision was allowed and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted: Option<Counted>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counted {
    /// Empty without a session.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub args_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<Spend>,
}

/// What a counted decision added, to take back if it is not recorded after all.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub call: Call,
    pub at_ms: i64,
}

/// Where the counts live: in this process (one server on SQLite) or in PostgreSQL (replicas).
#[derive(Clone)]
pub struct Usage(Counts);

#[derive(Clone)]
enum Counts {
    Local(Arc<local::Local>),
    Shared(Arc<shared::Shared>),
}

/// A decision's hold on its keys: what it saw, and the right to count it.
pub struct Lease {
    seen: Seen,
    now_ms: i64,
    keys: Vec<Key>,
    hold: Hold,
}

enum Hold {
    Local(local::Guards),
    Shared(shared::Held),
}

impl Usage {
    /// Counts in this process, on `clock`.
    pub fn local(clock: Clock) -> Self {
        Self(Counts::Local(Arc::new(local::Local::new(clock))))
    }

    /// Counts in PostgreSQL, shared by every replica on `pool`.
    pub fn shared(pool: sqlx::PgPool, clock: Clock) -> Self {
        Self(Counts::Shared(Arc::new(shared::Shared::new(pool, clock))))
    }

    /// Takes `call`'s keys (waiting for decisions on them to finish) and reads their counts.
    pub async fn begin(&self, call: &Call) -> Result<Lease, UsageError> {
        let keys = call.keys();
        let (totals, now_ms, hold) = match &self.0 {
            Counts::Local(local) => {
                let (totals, now, guards) = local.begin(&keys).await;
                (totals, now, Hold::Local(guards))
            }
            Counts::Shared(shared) => {
                let (totals, now, held) = shared.begin(&keys).await?;
                (totals, now, Hold::Shared(held))
            }
        };
        Ok(Lease {
            seen: Seen::of(call, &keys, &totals, now_ms),
            now_ms,
            keys,
            hold,
        })
    }

    /// Takes back a counted call whose decision was not recorded.
    pub async fn refund(&self, charge: &Charge) {
        match &self.0 {
            Counts::Local(local) => local.refund(charge).await,
            Counts::Shared(shared) => {
                if let Err(error) = shared.refund(charge).await {
                    // Left counted: later calls see one call more than happened (they may be
                    // denied early, never allowed past a limit).
                    tracing::warn!(%error, "a usage refund failed");
                }
            }
        }
    }

    /// Counts a call recorded in the ledger before this process started (the windows are rebuilt
    /// from the ledger's last day on one server).
    pub async fn restore(&self, call: &Call, at_ms: i64) {
        if let Counts::Local(local) = &self.0 {
            local.count(&call.keys(), call.amount(), at_ms).await;
        }
    }
}

impl Lease {
    pub fn seen(&self) -> &Seen {
        &self.seen
    }

    /// Releases the keys, counting `call` first when `count` (an allowed decision): what the
    /// decision saw, and the counted call (to give back if it is not recorded after all).
    pub async fn finish(
        self,
        call: Call,
        count: bool,
    ) -> Result<(Seen, Option<Charge>), UsageError> {
        let charge = count.then_some(Charge {
            call,
            at_ms: self.now_ms,
        });
        match self.hold {
            Hold::Local(mut guards) => {
                if let Some(charge) = &charge {
                    guards.count(&self.keys, 1, charge.call.amount(), self.now_ms);
                }
            }
            Hold::Shared(held) => held.finish(charge.as_ref()).await?,
        }
        Ok((self.seen, charge))
    }
}

#[cfg(test)]
mod tests;
