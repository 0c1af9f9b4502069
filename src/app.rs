//! The running services: what every request handler gets ([`AppState`]), built by
//! [`crate::server`] at start-up. Handlers reach the domain through these fields and the few
//! questions answered here that span several services (readiness, the control policy, the view
//! the compliance documents read).

use std::sync::Arc;

use crate::approvals::Approvals;
use crate::config::Config;
use crate::decision::Pipeline;
use crate::identity::Verifier;
use crate::killswitch::KillSwitches;
use crate::ledger::Ledger;
use crate::store::{DataDirLock, Store};

/// Everything a request handler needs.
pub struct Services {
    pub config: Config,
    pub verifier: Verifier,
    pub pipeline: Pipeline,
    pub store: Store,
    pub ledger: Arc<Ledger>,
    pub killswitches: Arc<KillSwitches>,
    pub approvals: Arc<Approvals>,
    pub outcomes: crate::outcomes::Outcomes,
    pub contests: crate::contests::Contests,
    pub incidents: crate::incidents::Incidents,
    pub versions: crate::lifecycle::Versions,
    pub control: crate::policy::control::ControlPolicy,
    pub webhooks: crate::webhooks::Webhooks,
    pub(crate) sweeper: tokio::task::JoinHandle<()>,
    /// Counts overdue incidents for the metric.
    pub(crate) incident_counter: tokio::task::JoinHandle<()>,
    /// Kept alive for as long as the services: dropping it unregisters the gauges.
    pub(crate) _gauges: crate::telemetry::Gauges,
    /// Held until the server stops: no second server writes to this data dir meanwhile.
    pub(crate) lock: std::sync::Mutex<Option<DataDirLock>>,
    /// What `/readyz` last answered, to log changes once.
    pub(crate) was_ready: std::sync::atomic::AtomicBool,
}

pub type AppState = Arc<Services>;

/// An approval as people read it: the approval, and the request it is bound to.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ApprovalView {
    #[serde(flatten)]
    pub approval: crate::approvals::Approval,
    /// The request as its decision recorded it; absent when that decision cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<BoundRequest>,
}

/// What an approval would let the agent do.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BoundRequest {
    /// The tool's arguments as recorded (a masked value shows as its commitment).
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    /// The agent's stated reason, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_risk: Option<String>,
}

/// What `/readyz` answers: each part's state, `ok` or why not.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub database: String,
    pub policies: String,
    pub ledger: String,
}

impl crate::lifecycle::Watched for Services {
    fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    fn versions(&self) -> &crate::lifecycle::Versions {
        &self.versions
    }
}

impl Services {
    /// Whether this server should get traffic, and why not. A change from ready to not ready or
    /// back is logged once, with the reasons.
    pub async fn readiness(&self) -> Readiness {
        // A second: a load balancer's check must not wait longer than a replica may go without
        // the shared control state.
        let database = match tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.store.ping(),
        )
        .await
        {
            Ok(Ok(())) => Ok("ok".to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 1s".to_string()),
        };
        let pack = self.pipeline.policies();
        let policies = if pack.policy_count() > 0 {
            Ok(format!(
                "{} policies, {}",
                pack.policy_count(),
                pack.digest()
            ))
        } else {
            Err("no policies loaded".to_string())
        };
        let ledger = self.ledger.failure().map_or(Ok("ok".to_string()), Err);
        let ready = database.is_ok() && policies.is_ok() && ledger.is_ok();
        let readiness = Readiness {
            ready,
            database: database.unwrap_or_else(|e| e),
            policies: policies.unwrap_or_else(|e| e),
            ledger: ledger.unwrap_or_else(|e| e),
        };
        let was_ready = self
            .was_ready
            .swap(ready, std::sync::atomic::Ordering::AcqRel);
        if was_ready != ready {
            if ready {
                tracing::info!("ready again");
            } else {
                tracing::warn!(database = %readiness.database, policies = %readiness.policies,
                    ledger = %readiness.ledger, "not ready");
            }
        }
        readiness
    }

    /// Reads the control state again from the database: registry, kill switches, approvals, and
    /// each store's active and shadow policy version (another replica changed some of it).
    pub async fn reload_control(&self) -> Result<(), String> {
        self.pipeline
            .registry()
            .reload(&self.store)
            .await
            .map_err(|e| format!("registry: {e}"))?;
        self.killswitches
            .reload()
            .await
            .map_err(|e| format!("kill switches: {e}"))?;
        self.approvals
            .reload()
            .await
            .map_err(|e| format!("approvals: {e}"))?;
        self.versions
            .sync(&self.pipeline)
            .await
            .map_err(|e| format!("policy versions: {e}"))?;
        Ok(())
    }

    /// Engages a kill switch for `caller` (already authorized); with
    /// `compliance.incident_on_killswitch` set, an engagement that is not a drill also opens an
    /// incident of that severity, linked to the switch and its agent. The switch holds whatever
    /// becomes of the incident: a failure to open one is logged, not answered.
    pub async fn engage_killswitch(
        &self,
        caller: &crate::identity::Caller,
        request: crate::killswitch::EngageRequest,
    ) -> Result<crate::killswitch::Switch, crate::killswitch::KillSwitchError> {
        if !request.force {
            self.check_scope(&request.scope)?;
        }
        let now = crate::timestamp::Timestamp::now();
        let switch = self
            .killswitches
            .engage(caller.agent.as_str(), request, now)
            .await?;
        let severity = self
            .config
            .compliance
            .incident_on_killswitch
            .as_deref()
            .and_then(crate::incidents::Severity::parse);
        if let Some(severity) = severity
            && !switch.drill
        {
            let opened = self
                .incidents
                .open(
                    caller.agent.as_str(),
                    crate::incidents::OpenIncident {
                        severity,
                        widespread: false,
                        summary: format!("Kill switch engaged: {}", switch.reason),
                        agents: switch.scope.agent.iter().cloned().collect(),
                        decisions: Vec::new(),
                        killswitches: vec![switch.id],
                        aware_at: switch.engaged_at,
                    },
                )
                .await;
            match opened {
                Ok(incident) => {
                    tracing::info!(incident = %incident.id, switch = %switch.id, "incident opened by a kill switch")
                }
                Err(error) => {
                    tracing::error!(%error, switch = %switch.id, "kill switch engaged; its incident could not be opened")
                }
            }
        }
        Ok(switch)
    }

    /// Refuses a kill-switch scope naming an agent or tool the registry does not hold, or an
    /// action the default store's schema does not declare.
    fn check_scope(
        &self,
        scope: &crate::killswitch::Scope,
    ) -> Result<(), crate::killswitch::KillSwitchError> {
        use crate::killswitch::KillSwitchError::Invalid;
        let snapshot = self.pipeline.registry().snapshot();
        let unknown = |what: &str, id: &str| {
            format!(
                "{what} `{id}` is not registered; check the id, or send `force: true` (`--force`) to engage for one not yet registered"
            )
        };
        if let Some(agent) = &scope.agent
            && snapshot.agent(agent).is_none()
        {
            return Err(Invalid {
                field: "scope.agent",
                message: unknown("agent", agent.as_str()),
            });
        }
        if let Some(tool) = &scope.tool
            && snapshot.tool(tool).is_none()
        {
            return Err(Invalid {
                field: "scope.tool",
                message: unknown("tool", tool.as_str()),
            });
        }
        if let Some(action) = &scope.action {
            let actions = self.pipeline.policies().action_names();
            if !actions.iter().any(|a| a == action) {
                return Err(Invalid {
                    field: "scope.action",
                    message: format!(
                        "action `{action}` is not in the schema (actions: {}); send `force: true` (`--force`) to engage anyway",
                        actions.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    /// An approval with the request it is bound to as its decision recorded it (arguments masked
    /// as recorded, the stated intent, the tool's description), so an approver sees what they
    /// approve, not only its digest.
    pub async fn approval_view(
        &self,
        approval: crate::approvals::Approval,
    ) -> Result<ApprovalView, crate::store::StoreError> {
        let asked = match approval.evaluation_id.parse() {
            Ok(id) => self.pipeline.get(&id).await?,
            Err(_) => None,
        };
        Ok(self.view_of(approval, asked.as_ref()))
    }

    /// An approval with the request its decision recorded (`asked`), as people read it.
    fn view_of(
        &self,
        approval: crate::approvals::Approval,
        asked: Option<&crate::model::DecisionRecord>,
    ) -> ApprovalView {
        let request = asked.map(|record| {
            let tool = (record.request.resource.kind == "Tool")
                .then(|| record.request.resource.id.parse().ok())
                .flatten()
                .and_then(|id| self.pipeline.registry().snapshot().tool(&id).cloned());
            BoundRequest {
                arguments: record
                    .request
                    .context
                    .as_ref()
                    .and_then(|c| c.get("args"))
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({})),
                intent: record.request.intent.clone(),
                tool_description: tool.as_ref().map(|t| t.tool.record.description.clone()),
                tool_risk: tool.map(|t| t.tool.record.risk.as_str().to_owned()),
            }
        });
        ApprovalView { approval, request }
    }

    /// Grants (`grant`) or denies approval `id` for `caller` (already authorized by the control
    /// policy): never by the requesting agent, and by default not by its registered owner.
    pub async fn decide_approval(
        &self,
        caller: &crate::identity::Caller,
        id: &crate::ids::ApprovalId,
        grant: bool,
        verdict: crate::approvals::Verdict,
    ) -> Result<crate::approvals::Approval, crate::approvals::ApprovalError> {
        let owner = match self.approvals.get(id).await? {
            Some(a) => a.agent_id.parse().ok().and_then(|agent| {
                self.pipeline
                    .registry()
                    .snapshot()
                    .agent(&agent)
                    .map(|e| e.agent.record.owner.clone())
            }),
            None => None,
        };
        self.approvals
            .decide(
                caller,
                id,
                grant,
                verdict,
                owner.as_deref(),
                crate::timestamp::Timestamp::now(),
            )
            .await
    }

    /// Approvals, newest first, each with its request ([`Services::approval_view`]).
    pub async fn approval_views(
        &self,
        status: Option<crate::approvals::Status>,
        limit: u32,
    ) -> Result<Vec<ApprovalView>, crate::approvals::ApprovalError> {
        let approvals = self.approvals.list(status, limit).await?;
        // The requests of all of them in one read, not one per approval.
        let ids: Vec<crate::ids::DecisionId> = approvals
            .iter()
            .filter_map(|a| a.evaluation_id.parse().ok())
            .collect();
        let mut asked = std::collections::HashMap::new();
        for row in self.store.decisions_by_id(&ids).await? {
            asked.insert(row.id.clone(), crate::decision::record_of(&row)?);
        }
        Ok(approvals
            .into_iter()
            .map(|a| {
                let record = asked.get(&a.evaluation_id);
                self.view_of(a, record)
            })
            .collect())
    }

    /// An audit pack (zip bytes) for `caller` (already authorized) over `[from, to)` (RFC 3339;
    /// default the whole ledger), of one agent or all; its export is recorded in the ledger.
    pub async fn audit_pack(
        &self,
        caller: &crate::identity::Caller,
        agent: Option<crate::ids::AgentId>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<u8>, crate::compliance::ComplianceError> {
        use crate::compliance::pack;
        let whole = pack::whole_history();
        let period = crate::compliance::Period {
            from: match from {
                Some(f) => crate::compliance::parse_time("from", f)?,
                None => whole.from,
            },
            to: match to {
                Some(t) => crate::compliance::parse_time("to", t)?,
                None => whole.to,
            },
        };
        if period.from >= period.to {
            return Err(crate::compliance::ComplianceError::Invalid {
                field: "from".into(),
                message: "must be earlier than `to`".into(),
            });
        }
        let (manifest, cursor) = pack::export(
            &self.compliance_sources(),
            &pack::ExportRequest { agent, period },
            std::io::Cursor::new(Vec::new()),
            &|_, _| {},
        )
        .await?;
        pack::record_export(&self.ledger, caller.agent.as_str(), &manifest).await?;
        Ok(cursor.into_inner())
    }

    /// Asks the control policy whether `caller` may perform `action`.
    pub fn authorize(
        &self,
        caller: &crate::identity::Caller,
        action: crate::policy::control::ControlAction,
    ) -> Result<(), crate::policy::control::ControlDenied> {
        self.control.authorize(caller, action)
    }

    /// A read-only view for the compliance documents, as of now.
    pub fn compliance_sources(&self) -> crate::compliance::Sources {
        let registry = self.pipeline.registry();
        crate::compliance::Sources {
            store: self.store.clone(),
            snapshot: registry.snapshot(),
            types: registry.types().clone(),
            pack: self.pipeline.policies(),
            config: self.config.compliance.clone(),
            signer: self.ledger.signer().clone(),
            ledger_size: self.ledger.head().size,
        }
    }
}

/// On replicas sharing PostgreSQL: each time the control version this replica reads moves past
/// the one whose state it has loaded, loads the state again ([`Services::reload_control`]) and
/// then says so to the ledger, so that decisions evaluated from then on carry the new version.
/// Ends when the services are dropped or the ledger stops.
pub async fn follow_control(
    services: std::sync::Weak<Services>,
    mut control: tokio::sync::watch::Receiver<crate::ledger::ControlSeen>,
) {
    while control.changed().await.is_ok() {
        let target = control.borrow_and_update().version;
        let Some(services) = services.upgrade() else {
            return;
        };
        if services
            .ledger
            .applied_version()
            .is_some_and(|v| v >= target)
        {
            continue;
        }
        match services.reload_control().await {
            Ok(()) => {
                services.ledger.set_applied(target);
                tracing::debug!(version = target, "control state reloaded");
            }
            // Retried on the next read of the version (every poll); decisions meanwhile carry
            // the old version and the ledger refuses them.
            Err(error) => {
                tracing::warn!(%error, version = target, "cannot reload the control state")
            }
        }
    }
}
