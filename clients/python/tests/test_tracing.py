"""With OpenTelemetry installed, the current span's `traceparent` goes on every call: Reins
records the decision under the agent's trace."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from reins import Reins

from .conftest import Server


def test_decisions_join_the_callers_trace(server: Server) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("agent-step") as span:
        decision = Reins(server.url, server.tokens["agent"]).decide("crm.note")
    assert decision.allowed
    assert decision.trace_id == format(span.get_span_context().trace_id, "032x")
    # Outside any span nothing is sent, and Reins starts a trace of its own.
    other = Reins(server.url, server.tokens["agent"]).decide("crm.note")
    assert other.trace_id != decision.trace_id
