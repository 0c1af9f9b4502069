//! Reins: a policy-as-code governance service for AI agents.
//!
//! An agent calls Reins before every action. Reins verifies the agent's token ([`identity`]),
//! looks up what it knows about the agent and the tool ([`registry`]), evaluates the active Cedar
//! policy pack ([`policy`]) through the decision pipeline ([`decision`]), stores the decision
//! durably ([`store`]) and answers. [`api`] is the HTTP surface, [`cli`] the `reins` command.
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod api;
pub mod app;
pub mod approvals;
pub mod authzen;
pub mod cli;
pub mod client;
pub mod compliance;
pub mod config;
pub mod console;
pub mod contests;
pub mod crypto;
pub mod decision;
pub mod events;
pub mod hook;
pub mod identity;
pub mod ids;
pub mod incidents;
pub mod killswitch;
pub mod ledger;
pub mod lifecycle;
pub mod mcp;
pub mod model;
pub mod outcomes;
pub mod policy;
pub mod registry;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod timestamp;
pub mod tlog;
pub mod tripwires;
pub mod usage;
pub mod webhooks;
