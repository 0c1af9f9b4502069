//! Reins through its HTTP surface: every test starts a real server on an ephemeral port.

mod approvals;
mod authzen;
mod bad_input;
mod cli;
mod compensations;
mod compliance;
mod conformance;
mod decisions;
mod fail_closed;
mod fuzz;
mod hardening;
mod harness;
mod hook;
mod idempotency;
mod intent;
mod interop;
mod killswitch;
mod ledger;
mod llm_args;
mod mcp;
mod outcomes;
mod policies;
mod registry;
mod telemetry;
mod tokens;
