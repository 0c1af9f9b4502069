use super::*;
use serde_json::json;

#[test]
fn amounts_read_as_cedar_decimals() {
    assert_eq!(Amount::parse("12.34"), Some(Amount(123_400)));
    assert_eq!(Amount::parse("-0.5"), Some(Amount(-5_000)));
    assert_eq!(Amount::parse("7"), Some(Amount(70_000)));
    for bad in [
        "",
        ".5",
        "1.23456",
        "1e3",
        "abc",
        "1.2.3",
        "99999999999999999999",
    ] {
        assert_eq!(Amount::parse(bad), None, "{bad}");
    }
    assert_eq!(Amount(123_400).to_decimal_text(), "12.34");
    assert_eq!(Amount(70_000).to_decimal_text(), "7.0");
    assert_eq!(Amount(-5).to_decimal_text(), "-0.0005");
    // In minor units: 1234 cents are 12.34; a fraction of a cent is refused.
    assert_eq!(Amount::from_json(&json!(1234), 2), Some(Amount(123_400)));
    assert_eq!(Amount::from_json(&json!(12.5), 2), None);
    assert_eq!(Amount::from_json(&json!(12.5), 0), Some(Amount(125_000)));
    assert_eq!(Amount::from_json(&json!("19.99"), 0), Some(Amount(199_900)));
    assert_eq!(Amount::from_json(&json!(true), 0), None);
}

fn call(agent: &str, user: Option<&str>, session: Option<&str>, args: Value) -> Call {
    let metered = Metered {
        amount: "/amount".into(),
        currency: Some("/currency".into()),
        minor_units: 2,
    };
    Call::new(
        agent,
        "payments.refund".into(),
        user,
        session,
        Some(&args),
        Some(&metered),
    )
    .unwrap()
}

#[test]
fn identical_calls_share_a_digest_whatever_the_key_order() {
    let a = call(
        "a",
        None,
        Some("s"),
        json!({"amount": 100, "currency": "EUR", "note": "x"}),
    );
    let b = call(
        "a",
        None,
        Some("s"),
        json!({"note": "x", "currency": "EUR", "amount": 100}),
    );
    let c = call(
        "a",
        None,
        Some("s"),
        json!({"note": "y", "currency": "EUR", "amount": 100}),
    );
    assert_eq!(a.digest, b.digest);
    assert_ne!(a.digest, c.digest);
    let bad = Call::new(
        "a",
        "t".into(),
        None,
        None,
        Some(&json!({"amount": "lots"})),
        Some(&Metered {
            amount: "/amount".into(),
            currency: None,
            minor_units: 0,
        }),
    )
    .unwrap_err();
    assert_eq!(bad.pointer, "args/amount");
}

#[tokio::test]
async fn only_counted_calls_are_seen_and_a_refund_takes_one_back() {
    let clock = Clock::manual();
    let usage = Usage::local(clock.clone());
    let c = call(
        "a",
        Some("u"),
        Some("s"),
        json!({"amount": 1250, "currency": "EUR"}),
    );
    let lease = usage.begin(&c).await.unwrap();
    assert_eq!(lease.seen().agent.calls_1m, 0);
    let spend = lease.seen().spend.clone().unwrap();
    assert_eq!(spend.user.unwrap().after_24h, Amount(125_000));
    lease.finish(c.clone(), false).await.unwrap();
    let lease = usage.begin(&c).await.unwrap();
    assert_eq!(lease.seen().agent.calls_1m, 0, "a deny counts nothing");
    let charge = lease.finish(c.clone(), true).await.unwrap().1.unwrap();
    let lease = usage.begin(&c).await.unwrap();
    let seen = lease.seen().clone();
    lease.finish(c.clone(), false).await.unwrap();
    assert_eq!(
        seen.agent,
        Calls {
            calls_1m: 1,
            calls_1h: 1,
            calls_24h: 1
        }
    );
    assert_eq!(seen.user.unwrap().calls_24h, 1);
    assert_eq!(
        seen.session,
        Some(SessionSeen {
            steps: 1,
            tool_calls: 1,
            identical_calls: 1
        })
    );
    let spend = seen.spend.clone().unwrap();
    assert_eq!(spend.user.unwrap().spent_24h, Amount(125_000));
    assert_eq!(spend.user.unwrap().after_24h, Amount(250_000));
    assert_eq!(spend.session.unwrap().after, Amount(250_000));
    assert_eq!(seen.retry_after("agent.calls_1m"), Some(61));
    usage.refund(&charge).await;
    let lease = usage.begin(&c).await.unwrap();
    assert_eq!(lease.seen().agent.calls_24h, 0);
    assert_eq!(lease.seen().session.unwrap().steps, 0);
    lease.finish(c.clone(), false).await.unwrap();
}

/// Concurrent decisions on one agent each see the previous one's count: a limit holds exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_holds_under_concurrent_decisions() {
    let usage = Usage::local(Clock::manual());
    let allowed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let usage = usage.clone();
        let allowed = allowed.clone();
        tasks.push(tokio::spawn(async move {
            let c = call("a", Some(&format!("u{}", i % 3)), None, json!({}));
            let lease = usage.begin(&c).await.unwrap();
            let allow = lease.seen().agent.calls_1m < 10;
            tokio::task::yield_now().await;
            lease.finish(c.clone(), allow).await.unwrap();
            if allow {
                allowed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(allowed.load(std::sync::atomic::Ordering::SeqCst), 10);
}
