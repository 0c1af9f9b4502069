"""The client and `guard` against a real Reins: allow, deny with reasons, approvals raised and
waited for, the kill switch, idempotent retries, an unreachable Reins, fail-open."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from reins import (
    ApprovalRequired,
    AsyncReins,
    Denied,
    ReasonCode,
    Reins,
    guard,
)

from .conftest import Server


def test_allow_and_deny_with_reasons(server: Server) -> None:
    with Reins(server.url, server.tokens["agent"]) as reins:
        allowed = reins.decide("crm.note", {"text": "hello"})
        assert allowed.allowed and allowed.ledger is not None
        denied = reins.decide("shell.exec")
        assert not denied.allowed
        assert denied.reasons[0].code == ReasonCode.UNKNOWN_TOOL
        assert "unknown_tool" in denied.describe()


def test_guard_runs_only_on_allow(server: Server) -> None:
    reins = Reins(server.url, server.tokens["agent"])
    calls: list[dict[str, Any]] = []

    @guard("crm.note", client=reins)
    def note(text: str, customer: str = "c-1") -> str:
        calls.append({"text": text, "customer": customer})
        return "noted"

    @guard("shell.exec", client=reins)
    def shell(command: str) -> str:
        calls.append({"command": command})
        return "ran"

    assert note("hi") == "noted"
    with pytest.raises(Denied) as denied:
        shell("rm -rf /")
    assert denied.value.reasons[0].code == ReasonCode.UNKNOWN_TOOL
    assert denied.value.decision_id and denied.value.ledger_index is not None
    assert calls == [{"text": "hi", "customer": "c-1"}]
    # The arguments Reins saw are the call's, by name.
    stored = server.get(f"/v1/decisions/{denied.value.decision_id}", server.tokens["admin"])
    assert stored.json()["request"]["context"]["args"] == {"command": "rm -rf /"}


def test_approval_is_raised_or_waited_for(server: Server) -> None:
    reins = Reins(server.url, server.tokens["agent"])
    runs: list[int] = []

    @guard("payments.refund", client=reins)
    def refund(order: str, amount: int) -> str:
        runs.append(amount)
        return "refunded"

    with pytest.raises(ApprovalRequired) as held:
        refund("o-1", 40)
    assert held.value.approval_id and held.value.url.endswith(held.value.approval_id)
    assert runs == []

    @guard("payments.refund", client=reins, on_approval="wait")
    def refund_when_approved(order: str, amount: int) -> str:
        runs.append(amount)
        return "refunded"

    # The approver grants the approval the first ask opens, from another thread.
    first = reins.decide("payments.refund", {"order": "o-2", "amount": 41})
    assert first.access_request is not None
    # A new call opens its own approval; grant whichever is pending for this request.
    approvals: list[str] = []

    def grant_pending() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = server.get("/v1/approvals?status=pending", server.tokens["approver"])
            for a in r.json()["approvals"]:
                if a["id"] not in approvals and a["id"] != first.access_request.approval_id:
                    approvals.append(a["id"])
                    server.grant_soon(a["id"], delay=0.1).join()
                    return
            time.sleep(0.05)

    import threading

    granter = threading.Thread(target=grant_pending)
    granter.start()
    assert refund_when_approved("o-3", 42) == "refunded"
    granter.join()
    assert runs == [42]


def test_kill_switch_denies_the_next_call(server: Server) -> None:
    reins = Reins(server.url, server.tokens["agent"])
    assert reins.decide("crm.note").allowed
    engaged = server.post(
        "/v1/killswitch",
        server.tokens["admin"],
        {"scope": {"agent": "refund-bot", "tool": "search.web"}, "reason": "test"},
    )
    assert engaged.status_code == 201, engaged.text
    try:
        d = reins.decide("search.web")
        assert not d.allowed and d.reasons[0].code == ReasonCode.KILL_SWITCH
    finally:
        r = httpx.request(
            "DELETE",
            f"{server.url}/v1/killswitch/{engaged.json()['id']}",
            json={"reason": "done"},
            headers={"Authorization": f"Bearer {server.tokens['admin']}"},
        )
        assert r.status_code == 200, r.text


def test_a_retried_call_is_recorded_once(server: Server) -> None:
    """The first try reaches Reins but its answer is lost (a 503 in front of it); the retry
    carries the same Idempotency-Key and is answered from the record."""
    seen: list[str] = []
    real = httpx.HTTPTransport()

    class LoseFirstAnswer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = real.handle_request(request)
            seen.append(request.headers.get("Idempotency-Key", ""))
            if len(seen) == 1:
                response.read()
                return httpx.Response(503, headers={"Retry-After": "0"})
            return response

    before = server.ledger_entries()
    with Reins(
        server.url, server.tokens["agent"], http=httpx.Client(transport=LoseFirstAnswer())
    ) as reins:
        d = reins.decide("crm.note", {"text": "once"})
    assert d.allowed
    assert len(seen) == 2 and seen[0] == seen[1] != ""
    assert server.ledger_entries() == before + 1


def test_unreachable_is_a_deny_within_the_deadline() -> None:
    reins = Reins("http://127.0.0.1:9", "token", timeout=0.5)
    started = time.monotonic()
    d = reins.decide("crm.note")
    assert time.monotonic() - started < 1.5
    assert not d.allowed and d.reasons[0].code == ReasonCode.UNREACHABLE

    @guard("crm.note", client=reins)
    def note() -> str:
        raise AssertionError("must not run")

    with pytest.raises(Denied) as denied:
        note()
    assert denied.value.reasons[0].code == ReasonCode.UNREACHABLE


def test_a_refused_token_is_a_deny(server: Server) -> None:
    d = Reins(server.url, "not-a-token").decide("crm.note")
    assert not d.allowed and d.reasons[0].code == ReasonCode.UNREACHABLE
    assert "401" in (d.reasons[0].message or "")


def test_fail_open_is_an_explicit_logged_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    reins = Reins("http://127.0.0.1:9", "token", timeout=0.3, fail_open=True)
    d = reins.decide("crm.note")
    assert d.allowed and d.reasons[0].code == ReasonCode.UNREACHABLE
    assert any("ALLOWING" in r.message for r in caplog.records)


def test_token_from_a_callable(server: Server) -> None:
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        return server.tokens["agent"]

    reins = Reins(server.url, token)
    assert reins.decide("crm.note").allowed
    assert reins.decide("crm.note").allowed
    assert len(calls) == 2


async def test_async_client_and_guard(server: Server) -> None:
    async with AsyncReins(server.url, server.tokens["agent"]) as reins:
        assert (await reins.decide("crm.note")).allowed
        ran: list[str] = []

        @guard("crm.note", client=reins)
        async def note(text: str) -> str:
            ran.append(text)
            return "ok"

        @guard("shell.exec", client=reins)
        async def shell(command: str) -> str:
            ran.append(command)
            return "ran"

        assert await note("async") == "ok"
        with pytest.raises(Denied):
            await shell("ls")
        assert ran == ["async"]
        batch = await reins.batch(
            [
                {"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}},
                {"action": "invoke", "resource": {"type": "Tool", "id": "shell.exec"}},
            ]
        )
        assert [d.allowed for d in batch] == [True, False]


def test_an_authzen_evaluation_for_enforcement_points(server: Server) -> None:
    pep = Reins(server.url, server.mint("gateway-1", roles="pep"))
    request = {
        "subject": {"type": "Agent", "id": "refund-bot"},
        "action": {"name": "invoke"},
        "resource": {"type": "Tool", "id": "crm.note"},
    }
    assert pep.evaluate(request)["decision"] is True
    request["resource"] = {"type": "Tool", "id": "shell.exec"}
    assert pep.evaluate(request)["decision"] is False
    # A caller without the pep role gets no allow either.
    assert Reins(server.url, server.tokens["agent"]).evaluate(request)["decision"] is False


def test_url_and_token_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REINS_URL", server.url)
    monkeypatch.setenv("REINS_TOKEN", server.tokens["agent"])
    assert Reins().decide("crm.note").allowed
    monkeypatch.delenv("REINS_TOKEN")
    d = Reins().decide("crm.note")
    assert not d.allowed and "no token" in (d.reasons[0].message or "")


def test_guard_reports_each_allowed_calls_outcome(server: Server) -> None:
    reins = Reins(server.url, server.tokens["agent"])

    @guard("crm.note", client=reins)
    def note(text: str) -> str:
        if text == "boom":
            raise ValueError("no such customer")
        return "noted"

    note("fine")
    with pytest.raises(ValueError):
        note("boom")
    page = server.get("/v1/decisions?limit=2&agent=refund-bot", server.tokens["admin"]).json()
    failed_id, succeeded_id = (d["decision_id"] for d in page["decisions"])
    ok = server.get(f"/v1/decisions/{succeeded_id}/outcome", server.tokens["admin"]).json()
    bad = server.get(f"/v1/decisions/{failed_id}/outcome", server.tokens["admin"]).json()
    assert ok["status"] == "succeeded" and ok["reported_by"] == "refund-bot"
    assert bad["status"] == "failed" and "ValueError: no such customer" in bad["summary"]
    # A second report of the same decision is refused, and says so without raising.
    assert reins.outcome(succeeded_id, "failed") is False


def test_the_intent_goes_with_the_decision(server: Server) -> None:
    reins = Reins(server.url, server.tokens["agent"])
    d = reins.decide(
        "crm.note", {"text": "x"}, intent="log the customer's call", trace={"trace_id": "run-1"}
    )
    stored = server.get(f"/v1/decisions/{d.decision_id}", server.tokens["admin"]).json()
    assert stored["request"]["intent"] == "log the customer's call"
    assert stored["request"]["trace"] == {"trace_id": "run-1"}
