//! The decision pipeline next to a bare Cedar `is_authorized` on the same policies and entities.
//!
//! Run with `cargo bench --bench decision`. Compare the figures as ratios within one run: the
//! machine is shared and noisy, so absolute numbers move between runs.
//!
//! - `cedar/is_authorized`: Cedar alone, request and entities prebuilt (the floor).
//! - `pipeline/evaluate`: Reins' pure evaluation: schema checks, registry lookup, context, Cedar.
//! - `identity/verify`: EdDSA token verification.
//! - `pipeline/decide`: evaluate + durable SQLite commit (synchronous = FULL, one fsync each).
//! - `ledger/canonical_entry`: a decision's ledger entry as RFC 8785 bytes (what the leaf hash
//!   covers), beside `serde_jcs/entry`, the crate it replaced, on the same entry.

use std::time::Duration;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, Request};
use criterion::{Criterion, criterion_group, criterion_main};
use reins::config::{Config, Overrides};
use reins::identity::{Caller, MintRequest};
use reins::model::{DecisionRequest, ResourceRef};
use reins::registry::{AgentRecord, AgentStatus, RiskTier, ToolRecord, ToolRisk};

const AGENTS: usize = 1000;
const TOOLS: usize = 50;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let overrides = Overrides {
        data_dir: Some(data.path().into()),
        policy_dir: Some(root.join("policies")),
        schema_file: Some(root.join("schemas/reins.cedarschema")),
        ..Default::default()
    };
    let mut config = Config::load(None, &overrides).unwrap();
    // Usage windows on a clock the bench moves: 5 calls a second stay under the default pack's
    // rate limit, so every counted evaluation is an allow that counts.
    let clock = reins::usage::Clock::manual();
    config.clock = clock.clone();
    let keys_dir = config.keys_dir();
    let services = rt.block_on(reins::server::bootstrap(config)).unwrap();
    let registry = services.pipeline.registry().clone();

    rt.block_on(async {
        let risks = [
            ToolRisk::Low,
            ToolRisk::Medium,
            ToolRisk::High,
            ToolRisk::Critical,
        ];
        for t in 0..TOOLS {
            let record = ToolRecord {
                description: format!("tool {t}"),
                risk: risks[t % 4],
                category: format!("cat-{}", t % 5),
                reversible: true,
                metered: None,
            };
            registry
                .put_tool(
                    "bench",
                    format!("tool-{t}").parse().unwrap(),
                    record,
                    "2026-01-01T00:00:00Z".parse().unwrap(),
                )
                .await
                .unwrap();
        }
        let tiers = [RiskTier::High, RiskTier::Limited, RiskTier::Minimal];
        for a in 0..AGENTS {
            let record = AgentRecord {
                name: format!("agent {a}"),
                owner: format!("team-{}", a % 20),
                provider: Some("acme".into()),
                model: Some("m".into()),
                model_version: Some("1".into()),
                risk_tier: tiers[a % 3],
                intended_purpose: None,
                tools: (0..8)
                    .map(|i| format!("tool-{}", (a + i) % TOOLS).parse().unwrap())
                    .collect(),
                status: AgentStatus::Active,
                documentation: Default::default(),
                ai_act: Default::default(),
                operators: Vec::new(),
            };
            registry
                .put_agent(
                    "bench",
                    format!("agent-{a}").parse().unwrap(),
                    record,
                    "2026-01-01T00:00:00Z".parse().unwrap(),
                )
                .await
                .unwrap();
        }
    });

    // agent-1 is limited tier and declared tool-1..tool-8; tool-1 is medium risk: an allow.
    let caller = Caller {
        agent: "agent-1".parse().unwrap(),
        on_behalf_of: None,
        roles: Default::default(),
        issuer: "reins-dev".into(),
    };
    let request = DecisionRequest {
        action: "invoke".into(),
        resource: ResourceRef {
            kind: "Tool".into(),
            id: "tool-1".into(),
            attributes: None,
        },
        context: serde_json::json!({"args": {"amount": 1200, "currency": "EUR"}})
            .as_object()
            .cloned(),
        session_id: None,
        approval_id: None,
        intent: None,
        trace: None,
        compensates: None,
    };
    let evaluated = services.pipeline.evaluate(&caller, &request).unwrap();
    assert_eq!(evaluated.decision.decision, reins::model::Outcome::Allow);

    // The same evaluation, prebuilt, for Cedar alone.
    let pack = services.pipeline.policies();
    let snapshot = registry.snapshot();
    let agent = snapshot
        .agent(&"agent-1".parse().unwrap())
        .unwrap()
        .entity
        .clone();
    let tool = snapshot
        .tool(&"tool-1".parse().unwrap())
        .unwrap()
        .entity
        .clone();
    let entities = Entities::from_entities([agent, tool], None).unwrap();
    let context = Context::from_json_value(
        serde_json::json!({"args": {"amount": 1200, "currency": "EUR"}}),
        None,
    )
    .unwrap();
    let uid = |s: &str| s.parse::<EntityUid>().unwrap();
    let cedar_request = Request::new(
        uid("Agent::\"agent-1\""),
        uid("Action::\"invoke\""),
        uid("Tool::\"tool-1\""),
        context,
        None,
    )
    .unwrap();
    let authorizer = Authorizer::new();
    assert_eq!(
        authorizer
            .is_authorized(&cedar_request, pack.policy_set(), &entities)
            .decision(),
        cedar_policy::Decision::Allow
    );

    let mut group = c.benchmark_group("decision");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("cedar/is_authorized", |b| {
        b.iter(|| authorizer.is_authorized(&cedar_request, pack.policy_set(), &entities))
    });
    group.bench_function("pipeline/evaluate", |b| {
        b.iter(|| services.pipeline.evaluate(&caller, &request).unwrap())
    });
    // The same evaluation with its usage read, shown to Cedar and counted (issue 24's cost).
    group.bench_function("pipeline/evaluate_counted", |b| {
        b.iter(|| {
            clock.advance(Duration::from_millis(200));
            let e = rt
                .block_on(services.pipeline.evaluate_counted(
                    &reins::decision::Target::Default,
                    &caller,
                    &request,
                ))
                .unwrap();
            assert_eq!(e.decision.decision, reins::model::Outcome::Allow);
            e
        })
    });

    let dev = reins::identity::DevIssuer::load(&keys_dir)
        .unwrap()
        .unwrap();
    let token = dev
        .mint(&MintRequest {
            agent: &caller.agent,
            on_behalf_of: None,
            roles: &[],
            ttl: Duration::from_secs(3600),
            audience: "reins",
            roles_claim: "roles",
        })
        .unwrap();
    group.bench_function("identity/verify", |b| {
        b.iter(|| rt.block_on(services.verifier.verify(&token)).unwrap())
    });
    group.bench_function("pipeline/decide", |b| {
        b.iter(|| {
            rt.block_on(services.pipeline.decide(&caller, request.clone()))
                .unwrap()
        })
    });

    let entry = reins::events::Entry {
        time: evaluated.decision.evaluated_at.to_string(),
        event: reins::events::Event::Decision(reins::events::DecisionEvent {
            decision_id: evaluated.decision.decision_id.to_string(),
            agent_id: "agent-1".into(),
            agent_version: Some(1),
            on_behalf_of: None,
            action: request.action.clone(),
            resource: reins::events::ResourceEvent {
                kind: "Tool".into(),
                id: "tool-1".into(),
                attributes: None,
            },
            context: serde_json::Value::Object(request.context.clone().unwrap()),
            session_id: None,
            approval_id: None,
            decision: evaluated.decision.decision,
            reasons: evaluated.decision.reasons.clone(),
            errors: Vec::new(),
            policy_digest: evaluated.decision.policy_digest.clone(),
            store: None,
            subject_type: None,
            intent: None,
            trace: None,
            compensates: None,
            control_version: None,
            usage: evaluated.usage.clone(),
        }),
    };
    assert_eq!(
        entry.to_bytes().unwrap(),
        serde_jcs::to_vec(&entry).unwrap()
    );
    group.bench_function("ledger/canonical_entry", |b| {
        b.iter(|| entry.to_bytes().unwrap())
    });
    group.bench_function("serde_jcs/entry", |b| {
        b.iter(|| serde_jcs::to_vec(&entry).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
