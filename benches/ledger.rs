//! Ledger throughput and cost at scale. `cargo bench --bench ledger`.
//!
//! - `append/one_at_a_time`: each append waits for its own commit (fsync): the baseline.
//! - `append/group_commit_64`: 64 concurrent appenders; the sequencer commits whatever is queued
//!   in one transaction. The ratio of the two is what group commit buys.
//! - then the ledger is filled to `REINS_BENCH_ENTRIES` (default 1,000,000) entries of ~600 bytes,
//!   and inclusion/consistency proofs are measured at that size; a full `verify_store` is timed
//!   once (it reads every entry, so it is not repeated).
//!
//! Under `cargo test` (no `--bench` argument) the fill is 2,000 entries so the suite stays fast.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reins::config::LedgerConfig;
use reins::ledger::{Append, Ledger};
use reins::store::{SideEffect, Store};
use reins::tlog::note::NoteSigner;

fn entry(i: u64) -> Append {
    // About the size of a decision entry with a small context.
    let body = format!(
        r#"{{"action":"invoke","agent_id":"agent-{a}","agent_version":3,"context":{{"args":{{"amount":{i},"currency":"EUR"}}}},"decision":"allow","decision_id":"01a1fe22-7cac-75f8-aeaf-{i:012}","errors":[],"on_behalf_of":null,"policy_digest":"sha256:cd647d1842b8fa6ff4d812cc405527ab014e28a0333fd00d7a047786c692a398","reasons":[{{"annotations":{{"id":"declared-tools"}},"code":"policy","policy_id":"declared-tools"}}],"resource":{{"id":"payments.refund","type":"Tool"}},"session_id":null,"time":"2026-11-21T12:43:55.436Z","type":"decision"}}"#,
        a = i % 1000
    );
    Append {
        kind: "decision",
        bytes: body.into_bytes(),
        side: SideEffect::None,
        control: false,
    }
}

async fn fill(ledger: &Arc<Ledger>, count: u64, concurrency: u64) {
    let start = ledger.head().size;
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while i < count {
                // Each appender sends small batches, like concurrent /v1/decisions/batch calls.
                let batch: Vec<Append> = (0..16).map(|k| entry(start + i * 16 + k)).collect();
                ledger.append(batch).await.unwrap();
                i += concurrency;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let target: u64 = if bench_mode {
        std::env::var("REINS_BENCH_ENTRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    } else {
        2_000
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = LedgerConfig::default();
    let store = rt
        .block_on(Store::open_sqlite(&dir.path().join("reins.db")))
        .unwrap();
    let ledger = Arc::new(
        rt.block_on(Ledger::open(
            store.clone(),
            &config,
            &Default::default(),
            &dir.path().join("keys"),
        ))
        .unwrap(),
    );

    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(ledger.append(vec![entry(n)])).unwrap()
        })
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function("group_commit_64", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..64u64)
                    .map(|k| {
                        let ledger = ledger.clone();
                        tokio::spawn(async move { ledger.append(vec![entry(k)]).await.unwrap() })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
    group.finish();

    let have = ledger.head().size;
    if target > have {
        let started = Instant::now();
        let batches = (target - have).div_ceil(16);
        rt.block_on(fill(&ledger, batches, 64));
        let took = started.elapsed();
        eprintln!(
            "filled the ledger to {} entries in {:.1}s: {:.0} durable appends/s (64 appenders, batches of 16)",
            ledger.head().size,
            took.as_secs_f64(),
            (ledger.head().size - have) as f64 / took.as_secs_f64()
        );
    }
    let size = ledger.head().size;

    let mut group = c.benchmark_group(format!("proofs_at_{size}"));
    group.sample_size(50);
    let mut i = 0u64;
    group.bench_function("inclusion", |b| {
        b.iter(|| {
            i = (i + 7919) % size;
            rt.block_on(ledger.inclusion_proof(i, size)).unwrap()
        })
    });
    group.bench_function("consistency", |b| {
        b.iter(|| {
            i = (i + 7919) % size;
            rt.block_on(ledger.consistency_proof(i.max(1), size))
                .unwrap()
        })
    });
    group.finish();

    rt.block_on(ledger.shutdown());
    let key_pem = std::fs::read_to_string(dir.path().join("keys/ledger.pem")).unwrap();
    let key = ed25519_dalek::pkcs8::DecodePrivateKey::from_pkcs8_pem(&key_pem).unwrap();
    let verifier = NoteSigner::new(&config.origin, key).unwrap().verifier();
    let started = Instant::now();
    let report = rt
        .block_on(reins::ledger::verify::verify_store(
            &store, &verifier, None, None,
        ))
        .unwrap();
    let took = started.elapsed();
    eprintln!(
        "full verification of {} entries and {} checkpoints: {:.1}s ({:.0} entries/s)",
        report.entries,
        report.checkpoints,
        took.as_secs_f64(),
        report.entries as f64 / took.as_secs_f64()
    );
    let db_bytes = std::fs::metadata(dir.path().join("reins.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "database size: {:.1} MiB ({:.0} bytes/entry)",
        db_bytes as f64 / 1048576.0,
        db_bytes as f64 / size as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
