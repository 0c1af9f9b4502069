//! The floor `scripts/bench.sh` measures Reins against: the smallest honest Cedar HTTP service.
//!
//! axum and cedar-policy with nothing else: no token verification (the bearer token is looked up
//! in a table of the fleet's tokens), no registry lookups (one `Entities` with every agent and tool,
//! built at start-up), no kill switch, no ledger and no storage. Per request it does what any
//! Cedar service must: parse the JSON body, build the Cedar request and its context from it,
//! evaluate the same policy pack as Reins, and answer in JSON. Issue 9 calls this "a minimal
//! axum + cedar-policy service"; Reins' decisions/s divided by this one's says what identity,
//! the registry and a durable, signed ledger cost on top of Cedar itself.
//!
//! It reads the fleet from a Reins data directory once, at start-up (the registry rows, read-only),
//! and the tokens from the bench's fleet file ("<token> <tool>,..." per line, agent-0 first).
//!
//!   cargo run --release --example cedar_baseline -- --data-dir D --fleet F --listen 127.0.0.1:18481

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use cedar_policy::{Context, Entities, EntityUid, Request};
use clap::Parser;
use reins::policy::PolicyPack;
use reins::registry::{EntityTypes, Snapshot};
use reins::store::Store;
use serde::Deserialize;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// A Reins data directory whose registry holds the fleet.
    #[arg(long)]
    data_dir: PathBuf,
    /// The bench's fleet file: one line per agent, "<token> <tool>,<tool>,...", agent-0 first.
    #[arg(long)]
    fleet: PathBuf,
    #[arg(long, default_value = "127.0.0.1:18481")]
    listen: String,
    #[arg(long, default_value = "policies")]
    policy_dir: PathBuf,
    #[arg(long, default_value = "schemas/reins.cedarschema")]
    schema_file: PathBuf,
}

struct Service {
    policies: PolicyPack,
    entities: Entities,
    /// Bearer token -> principal: the fleet's tokens, not verified.
    principals: HashMap<String, EntityUid>,
    types: EntityTypes,
    action: EntityUid,
}

#[derive(Deserialize)]
struct DecisionRequest {
    action: String,
    resource: Resource,
    #[serde(default)]
    context: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = Store::open_sqlite_read_only(&args.data_dir.join("reins.db")).await?;
    let types = EntityTypes::new()?;
    let snapshot = Snapshot::load(&store, &types).await?;
    let entities = Entities::from_entities(snapshot.entities().cloned(), None)?;
    let policies = PolicyPack::load(&args.policy_dir, &args.schema_file)?;
    let agent = types
        .named("Agent")
        .ok_or_else(|| anyhow::anyhow!("no Agent type"))?;
    let mut principals = HashMap::new();
    for (n, line) in std::fs::read_to_string(&args.fleet)?.lines().enumerate() {
        let token = line.split_whitespace().next().unwrap_or_default();
        principals.insert(token.to_owned(), types.uid(&agent, &format!("agent-{n}")));
    }
    let action = r#"Action::"invoke""#.parse()?;
    let service = Arc::new(Service {
        policies,
        entities,
        principals,
        types,
        action,
    });
    let app = Router::new()
        .route("/v1/decisions", post(decide))
        .with_state(service);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn decide(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Json(request): Json<DecisionRequest>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or((StatusCode::UNAUTHORIZED, "no bearer token".to_owned()))?;
    let principal = service
        .principals
        .get(token)
        .ok_or((StatusCode::UNAUTHORIZED, "unknown token".to_owned()))?;
    if request.action != "invoke" {
        return Err(bad(format!("unknown action {}", request.action)));
    }
    let resource_type = service
        .types
        .named(&request.resource.kind)
        .ok_or_else(|| bad(format!("unknown resource type {}", request.resource.kind)))?;
    let resource = service.types.uid(&resource_type, &request.resource.id);
    let mut context = request.context;
    context
        .entry("args")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let context = Context::from_json_value(serde_json::Value::Object(context), None)
        .map_err(|e| bad(e.to_string()))?;
    let cedar = Request::new(
        principal.clone(),
        service.action.clone(),
        resource,
        context,
        None,
    )
    .map_err(|e| bad(e.to_string()))?;
    let response = service.policies.is_authorized(&cedar, &service.entities);
    let decision = match response.decision() {
        cedar_policy::Decision::Allow => "allow",
        cedar_policy::Decision::Deny => "deny",
    };
    let reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|p| p.to_string())
        .collect();
    Ok(Json(
        serde_json::json!({ "decision": decision, "reasons": reasons }),
    ))
}
