//! Answers slower than `http.slow_answer`, logged with what the ledger's write path did while
//! they were being made (`ledger::activity`): a tail latency an agent notices is attributed to a
//! commit, an fsync or a WAL restart, or shown to have been spent elsewhere (a queue, the
//! scheduler). `scripts/bench.sh`'s soak mode sets 20 ms and reads these lines.
//!
//! The time is the server's: from the request reaching the router (its head and body read) to
//! the answer's head leaving it, so it leaves out the kernel's and the client's queues.
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;

pub(super) async fn log_slow_answers(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let slow = state.config.http.slow_answer;
    let started = Instant::now();
    let marked = state.ledger.activity().map(|a| (a, a.mark()));
    let response = next.run(request).await;
    let took = started.elapsed();
    if took >= slow {
        let status = response.status().as_u16();
        let took_ms = took.as_secs_f64() * 1e3;
        match marked {
            Some((activity, mark)) => tracing::warn!(
                took_ms,
                status,
                ledger_longest = %activity.longest_during(&mark),
                ledger_steps = %activity.describe_during(&mark),
                last_batch = activity.last_batch(),
                "slow answer"
            ),
            // A replica on PostgreSQL: its write path is the database's, not timed here.
            None => tracing::warn!(took_ms, status, "slow answer"),
        }
    }
    response
}
