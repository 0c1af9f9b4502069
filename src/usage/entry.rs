//! How a decision's ledger entry writes its `usage` block: the counts as arrays in window order
//! rather than as the objects `context.usage` and `GET /v1/decisions/{id}` show.
//!
//! Every decision's entry carries the block, and the ledger's cost grows with the bytes it
//! writes, hashes, syncs and checkpoints: the object form was about 130 bytes on a 520-byte
//! decision, this one is about half of that. The form:
//! - `agent_tool`, `agent`, `user`: `[calls_1m, calls_1h, calls_24h]`;
//! - `session`: `[steps, tool_calls, identical_calls]`;
//! - `spend`: `currency`, `amount`, and for `agent` and `user` `[spent_1m, spent_1h, spent_24h]`,
//!   for `session` the amount spent; each `after_*` is its `spent_*` plus `amount`, as Reins
//!   computes it, so it is not written;
//! - `counted` as before.
//!
//! Entries written in the object form (before this one) read back the same: each field takes
//! either form, so replay and the restart's rebuild of the windows work on any ledger.
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Amount, Calls, Counted, Recorded, Seen, SessionSeen, SessionSums, SpendSeen, Sums};

/// `#[serde(with)]` for an entry's `Option<Recorded>` (absent when `None`, which the field's
/// `skip_serializing_if` leaves out).
pub fn serialize<S: Serializer>(usage: &Option<Recorded>, s: S) -> Result<S::Ok, S::Error> {
    match usage {
        None => s.serialize_none(),
        Some(recorded) => Written::from(recorded).serialize(s),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Recorded>, D::Error> {
    Ok(Option::<Read>::deserialize(d)?.map(Recorded::from))
}

/// The block as written.
#[derive(Serialize)]
struct Written<'a> {
    agent_tool: [i64; 3],
    agent: [i64; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<[i64; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<[i64; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spend: Option<WrittenSpend<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counted: Option<&'a Counted>,
}

#[derive(Serialize)]
struct WrittenSpend<'a> {
    currency: &'a str,
    amount: Amount,
    agent: [Amount; 3],
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<[Amount; 3]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Amount>,
}

fn calls(c: &Calls) -> [i64; 3] {
    [c.calls_1m, c.calls_1h, c.calls_24h]
}

fn spent(s: &Sums) -> [Amount; 3] {
    [s.spent_1m, s.spent_1h, s.spent_24h]
}

impl<'a> From<&'a Recorded> for Written<'a> {
    fn from(r: &'a Recorded) -> Self {
        let seen = &r.seen;
        Self {
            agent_tool: calls(&seen.agent_tool),
            agent: calls(&seen.agent),
            user: seen.user.as_ref().map(calls),
            session: seen
                .session
                .map(|s| [s.steps, s.tool_calls, s.identical_calls]),
            spend: seen.spend.as_ref().map(|s| WrittenSpend {
                currency: &s.currency,
                amount: s.amount,
                agent: spent(&s.agent),
                user: s.user.as_ref().map(spent),
                session: s.session.map(|s| s.spent),
            }),
            counted: r.counted.as_ref(),
        }
    }
}

/// The block as read: either form, field by field.
#[derive(Deserialize)]
struct Read {
    agent_tool: Either<[i64; 3], Calls>,
    agent: Either<[i64; 3], Calls>,
    #[serde(default)]
    user: Option<Either<[i64; 3], Calls>>,
    #[serde(default)]
    session: Option<Either<[i64; 3], SessionSeen>>,
    #[serde(default)]
    spend: Option<ReadSpend>,
    #[serde(default)]
    counted: Option<Counted>,
}

#[derive(Deserialize)]
struct ReadSpend {
    currency: String,
    amount: Amount,
    agent: Either<[Amount; 3], Sums>,
    #[serde(default)]
    user: Option<Either<[Amount; 3], Sums>>,
    #[serde(default)]
    session: Option<Either<Amount, SessionSums>>,
}

/// A field in this module's form (`Compact`) or the object form (`Object`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Either<C, O> {
    Compact(C),
    Object(O),
}

impl From<Either<[i64; 3], Calls>> for Calls {
    fn from(e: Either<[i64; 3], Calls>) -> Self {
        match e {
            Either::Compact([calls_1m, calls_1h, calls_24h]) => Calls {
                calls_1m,
                calls_1h,
                calls_24h,
            },
            Either::Object(c) => c,
        }
    }
}

impl From<Either<[i64; 3], SessionSeen>> for SessionSeen {
    fn from(e: Either<[i64; 3], SessionSeen>) -> Self {
        match e {
            Either::Compact([steps, tool_calls, identical_calls]) => SessionSeen {
                steps,
                tool_calls,
                identical_calls,
            },
            Either::Object(s) => s,
        }
    }
}

/// Sums from what was spent before the call and the call's `amount`, as [`Seen`] computes them.
fn sums(e: Either<[Amount; 3], Sums>, amount: Amount) -> Sums {
    match e {
        Either::Compact(spent) => Sums::new(spent, amount),
        Either::Object(s) => s,
    }
}

impl From<Read> for Recorded {
    fn from(r: Read) -> Self {
        let spend = r.spend.map(|s| {
            let amount = s.amount;
            SpendSeen {
                currency: s.currency,
                amount,
                agent: sums(s.agent, amount),
                user: s.user.map(|u| sums(u, amount)),
                session: s.session.map(|e| match e {
                    Either::Compact(spent) => SessionSums::new(spent, amount),
                    Either::Object(s) => s,
                }),
            }
        });
        Recorded {
            seen: Seen {
                agent_tool: r.agent_tool.into(),
                agent: r.agent.into(),
                user: r.user.map(Into::into),
                session: r.session.map(Into::into),
                spend,
                leaves: Vec::new(),
            },
            counted: r.counted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Entry {
        #[serde(default, with = "super", skip_serializing_if = "Option::is_none")]
        usage: Option<Recorded>,
    }

    fn full() -> Recorded {
        let amount = Amount::parse("2.50").unwrap_or_default();
        let sums = |spent: i64| Sums {
            spent_1m: Amount(spent),
            spent_1h: Amount(spent * 2),
            spent_24h: Amount(spent * 3),
            after_1m: Amount(spent).saturating_add(amount),
            after_1h: Amount(spent * 2).saturating_add(amount),
            after_24h: Amount(spent * 3).saturating_add(amount),
        };
        Recorded {
            seen: Seen {
                agent_tool: Calls {
                    calls_1m: 1,
                    calls_1h: 2,
                    calls_24h: 3,
                },
                agent: Calls {
                    calls_1m: 4,
                    calls_1h: 5,
                    calls_24h: 6,
                },
                user: Some(Calls {
                    calls_1m: 7,
                    calls_1h: 8,
                    calls_24h: 9,
                }),
                session: Some(SessionSeen {
                    steps: 10,
                    tool_calls: 11,
                    identical_calls: 12,
                }),
                spend: Some(SpendSeen {
                    currency: "EUR".into(),
                    amount,
                    agent: sums(10_000),
                    user: Some(sums(20_000)),
                    session: Some(SessionSums {
                        spent: Amount(30_000),
                        after: Amount(30_000).saturating_add(amount),
                    }),
                }),
                leaves: Vec::new(),
            },
            counted: Some(Counted {
                args_digest: "ab".repeat(32),
                spend: None,
            }),
        }
    }

    #[test]
    fn the_written_form_reads_back_as_what_was_seen() {
        let entry = Entry {
            usage: Some(full()),
        };
        let bytes = crate::tlog::canonical::to_vec(&entry).unwrap_or_default();
        let back: Entry = serde_json::from_slice(&bytes).unwrap_or(Entry { usage: None });
        assert_eq!(back, entry);
        let written: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(written["usage"]["agent"], json!([4, 5, 6]));
        assert_eq!(
            written["usage"]["spend"]["user"],
            json!(["2.0", "4.0", "6.0"])
        );
        assert!(written["usage"]["spend"].get("after_24h").is_none());
        // No usage, no block.
        assert_eq!(
            crate::tlog::canonical::to_vec(&Entry { usage: None }).unwrap_or_default(),
            b"{}"
        );
    }

    #[test]
    fn entries_written_in_the_object_form_read_the_same() {
        // The block as entries recorded it before the compact form: `Recorded`'s own serde.
        let old = json!({ "usage": serde_json::to_value(full()).unwrap_or_default() });
        assert_eq!(old["usage"]["agent"]["calls_1m"], 4, "{old}");
        let back: Entry = serde_json::from_value(old).unwrap_or(Entry { usage: None });
        assert_eq!(back.usage, Some(full()));
    }

    #[test]
    fn the_compact_form_is_at_most_half_the_bytes() {
        let recorded = full();
        let compact = crate::tlog::canonical::to_vec(&Entry {
            usage: Some(recorded.clone()),
        })
        .unwrap_or_default();
        let object = crate::tlog::canonical::to_vec(&recorded).unwrap_or_default();
        assert!(
            compact.len() * 2 <= object.len(),
            "{} vs {}",
            compact.len(),
            object.len()
        );
    }
}
