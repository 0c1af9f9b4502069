//! Audit-pack export and offline verification at scale. `cargo bench --bench audit_pack`.
//!
//! Records `REINS_BENCH_DECISIONS` decisions (default 100,000; 2,000 under `cargo test`) for one
//! agent through the real pipeline (batches of 100, durable ledger), then times, in the same run:
//! a bare read of every ledger entry (the baseline), the export of the whole range with the agent's
//! model card and checklist, and `verify` of the zip. Prints times, ratios and the zip's size.

use std::time::{Duration, Instant};

use reins::compliance::pack::{ExportRequest, export, verify, whole_history};
use reins::identity::Caller;
use reins::model::{DecisionRequest, ResourceRef};
use reins::registry::{AgentRecord, AgentStatus, RiskTier, ToolRecord, ToolRisk};

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let decisions: usize = if bench_mode {
        std::env::var("REINS_BENCH_DECISIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
    } else {
        2_000
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(decisions));
}

async fn run(decisions: usize) {
    let data = tempfile::tempdir().expect("tempdir");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let overrides = reins::config::Overrides {
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        data_dir: Some(data.path().to_path_buf()),
        policy_dir: Some(root.join("policies")),
        schema_file: Some(root.join("schemas/reins.cedarschema")),
        ..Default::default()
    };
    let mut config = reins::config::Config::load(None, &overrides).expect("config");
    config.batch_max = 100;
    config.ledger.checkpoint_interval = Duration::from_millis(50);
    let server = reins::server::start(config).await.expect("server");
    let state = server.state.clone();
    let registry = state.pipeline.registry();
    let now: reins::timestamp::Timestamp = "2026-11-21T00:00:00Z".parse().unwrap();
    registry
        .put_tool(
            "bench",
            "search.web".parse().expect("id"),
            ToolRecord {
                description: "web search".into(),
                risk: ToolRisk::Low,
                category: "search".into(),
                reversible: true,
                metered: None,
            },
            now,
        )
        .await
        .expect("tool");
    registry
        .put_agent(
            "bench",
            "pack-bot".parse().expect("id"),
            AgentRecord {
                name: "pack bot".into(),
                owner: "team".into(),
                provider: None,
                model: None,
                model_version: None,
                risk_tier: RiskTier::High,
                intended_purpose: None,
                tools: vec!["search.web".parse().expect("id")],
                status: AgentStatus::Active,
                documentation: Default::default(),
                ai_act: Default::default(),
                operators: Vec::new(),
            },
            now,
        )
        .await
        .expect("agent");
    let caller = Caller {
        agent: "pack-bot".parse().expect("id"),
        on_behalf_of: None,
        roles: Default::default(),
        issuer: "bench".into(),
    };
    let request = DecisionRequest {
        action: "invoke".into(),
        resource: ResourceRef {
            kind: "Tool".into(),
            id: "search.web".into(),
            attributes: None,
        },
        context: Some(
            serde_json::json!({"args": {"amount": 12}})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ),
        session_id: None,
        approval_id: None,
        intent: None,
        trace: None,
        compensates: None,
    };
    let started = Instant::now();
    let mut done = 0;
    while done < decisions {
        let n = (decisions - done).min(100);
        state
            .pipeline
            .decide_batch(&caller, vec![request.clone(); n])
            .await
            .expect("batch");
        done += n;
    }
    println!(
        "recorded {decisions} decisions in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let size = state.ledger.head().size;
    while state
        .store
        .latest_checkpoint()
        .await
        .expect("checkpoint")
        .is_none_or(|c| (c.tree_size as u64) < size)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Baseline: read every entry once.
    let t = Instant::now();
    let mut bytes = 0usize;
    let mut lo = 0;
    while lo < size {
        let hi = (lo + 10_000).min(size);
        bytes += state
            .store
            .entries(lo, hi)
            .await
            .expect("entries")
            .iter()
            .map(|r| r.entry.len())
            .sum::<usize>();
        lo = hi;
    }
    let read = t.elapsed();

    let sources = state.compliance_sources();
    let path = data.path().join("pack.zip");
    let t = Instant::now();
    let (manifest, file) = export(
        &sources,
        &ExportRequest {
            agent: Some("pack-bot".parse().expect("id")),
            period: whole_history(),
        },
        std::io::BufWriter::new(std::fs::File::create(&path).expect("create")),
        &|_, _| {},
    )
    .await
    .expect("export");
    drop(file);
    let exported = t.elapsed();
    let zip_bytes = std::fs::metadata(&path).expect("zip").len();

    let t = Instant::now();
    let verified = verify(
        std::io::BufReader::new(std::fs::File::open(&path).expect("open")),
        Some(&sources.signer.verifier_key()),
    )
    .expect("the pack verifies");
    let verified_in = t.elapsed();
    assert_eq!(verified.entries, manifest.entries);

    println!(
        "ledger: {size} entries, {:.1} MB of entry bytes",
        bytes as f64 / 1e6
    );
    println!("baseline read of every entry: {:.2}s", read.as_secs_f64());
    println!(
        "export ({} entries, card, checklist, proofs): {:.2}s ({:.1}x the baseline), zip {:.1} MB ({:.0} B/entry)",
        manifest.entries,
        exported.as_secs_f64(),
        exported.as_secs_f64() / read.as_secs_f64(),
        zip_bytes as f64 / 1e6,
        zip_bytes as f64 / manifest.entries.max(1) as f64
    );
    println!(
        "verify offline: {:.2}s ({:.1}x the baseline)",
        verified_in.as_secs_f64(),
        verified_in.as_secs_f64() / read.as_secs_f64()
    );
    server.stop().await;
}
