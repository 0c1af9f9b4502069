"""`Reins` and `AsyncReins`: the HTTP client of a Reins server, failing closed.

One overall deadline per call (default 2 s). Connection errors, 429 and 503 are retried inside it,
after the server's `Retry-After` when it gives one, and every try of one call carries the same
`Idempotency-Key`, so a retry is answered from the record instead of being recorded twice. Past
the deadline, or on any other failure, the answer is a deny whose reason is `unreachable`: never
an allow, unless the client was built with `fail_open=True`, which logs every time it is used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import httpx

from ._errors import ReinsError
from ._models import Approval, ApprovalStatus, Decision, Outcome, Reason, ReasonCode

log = logging.getLogger("reins")

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 2.0
#: Statuses worth another try inside the deadline.
RETRYABLE = {429, 503}

TokenSource = str | Callable[[], str]


def _traceparent(headers: dict[str, str]) -> None:
    """Adds the current span's `traceparent`, when OpenTelemetry is installed."""
    try:
        from opentelemetry import propagate
    except ImportError:
        return
    propagate.inject(headers)


class _Config:
    """What `Reins` and `AsyncReins` share: where, who, how long, what a failure means."""

    def __init__(
        self,
        base_url: str | None,
        token: TokenSource | None,
        timeout: float,
        fail_open: bool,
    ) -> None:
        self.base_url = (base_url or os.environ.get("REINS_URL") or DEFAULT_URL).rstrip("/")
        self._token = token if token is not None else os.environ.get("REINS_TOKEN")
        self.timeout = timeout
        self.fail_open = fail_open
        if fail_open:
            log.warning("reins: fail_open=True: calls Reins cannot answer will be ALLOWED")

    def headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        token = self._token() if callable(self._token) else self._token
        if not token:
            raise ReinsError("no token: pass token=, or set REINS_TOKEN")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        _traceparent(headers)
        return headers

    # What an answer (or the failure to get one) means; the same for both clients.

    def read_decision(self, answer: httpx.Response | ReinsError) -> Decision:
        if isinstance(answer, ReinsError):
            return self.unanswered(str(answer))
        if answer.status_code != 200:
            return self.unanswered(f"Reins answered {_error_text(answer)}")
        return Decision.model_validate(answer.json())

    def read_decisions(self, answer: httpx.Response | ReinsError, n: int) -> list[Decision]:
        if isinstance(answer, httpx.Response) and answer.status_code == 200:
            return [Decision.model_validate(d) for d in answer.json()["decisions"]]
        failed = self.read_decision(answer)
        return [failed for _ in range(n)]

    def read_approval(self, answer: httpx.Response | ReinsError, approval_id: str) -> Approval:
        if isinstance(answer, ReinsError):
            raise answer
        if answer.status_code != 200:
            raise ReinsError(f"approval {approval_id}: {_error_text(answer)}")
        return Approval.model_validate(answer.json())

    def read_outcome(self, answer: httpx.Response | ReinsError, decision_id: str) -> bool:
        if isinstance(answer, ReinsError):
            log.warning("reins: cannot report the outcome of %s: %s", decision_id, answer)
            return False
        if answer.status_code != 201:
            log.warning("reins: outcome of %s refused: %s", decision_id, _error_text(answer))
        return answer.status_code == 201

    def read_evaluation(self, answer: httpx.Response | ReinsError) -> dict[str, Any]:
        if isinstance(answer, ReinsError):
            return {"decision": self.fail_open, "context": {"reason": str(answer)}}
        if answer.status_code != 200:
            return {"decision": self.fail_open, "context": {"reason": _error_text(answer)}}
        result: dict[str, Any] = answer.json()
        return result

    def unanswered(self, why: str) -> Decision:
        """The answer when Reins gave none: a deny, or with `fail_open` a logged allow."""
        if self.fail_open:
            log.warning("reins: no answer (%s); ALLOWING because fail_open=True", why)
        return Decision(
            decision_id="",
            decision=Outcome.ALLOW if self.fail_open else Outcome.DENY,
            reasons=[Reason(code=ReasonCode.UNREACHABLE, message=why)],
            evaluated_at=datetime.now(timezone.utc).isoformat(),
        )


def decision_body(
    tool: str,
    args: Mapping[str, Any] | None,
    *,
    action: str,
    resource_type: str,
    session_id: str | None,
    approval_id: str | None,
    context: Mapping[str, Any] | None,
    intent: str | None = None,
    trace: Mapping[str, Any] | None = None,
    compensates: str | None = None,
) -> dict[str, Any]:
    """The JSON of a decision request for `tool` with its arguments."""
    ctx: dict[str, Any] = dict(context or {})
    if args is not None:
        ctx["args"] = dict(args)
    body: dict[str, Any] = {"action": action, "resource": {"type": resource_type, "id": tool}}
    if ctx:
        body["context"] = ctx
    if session_id:
        body["session_id"] = session_id
    if approval_id:
        body["approval_id"] = approval_id
    if intent:
        body["intent"] = intent
    if trace:
        body["trace"] = dict(trace)
    if compensates:
        body["compensates"] = compensates
    return body


def _outcome_body(status: str, summary: str | None, result_sha256: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status}
    if summary:
        body["summary"] = summary[:2048]
    if result_sha256:
        body["result_sha256"] = result_sha256
    return body


def _retry_after(response: httpx.Response | None, attempt: int) -> float:
    """Seconds to wait before the next try: the server's `Retry-After`, else backoff with jitter."""
    if response is not None:
        value = response.headers.get("Retry-After")
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                pass
    backoff: float = min(0.5, 0.05 * 2.0**attempt)
    return backoff * (0.5 + random.random())


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        return f"{response.status_code} {error.get('code', '')}: {error.get('message', '')}"
    except ValueError:
        return f"{response.status_code}: {response.text[:200]}"


def expiry(approval: Approval) -> float:
    """The approval's expiry as a Unix time."""
    return datetime.fromisoformat(approval.expires_at.replace("Z", "+00:00")).timestamp()


class Reins:
    """The synchronous client. `token` may be a callable, called for every request."""

    def __init__(
        self,
        base_url: str | None = None,
        token: TokenSource | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        fail_open: bool = False,
        http: httpx.Client | None = None,
    ) -> None:
        self._config = _Config(base_url, token, timeout, fail_open)
        self._http = http or httpx.Client()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Reins:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self, method: str, path: str, body: Any = None, *, idempotent: bool = False
    ) -> httpx.Response:
        """One call, retried inside the deadline; raises `ReinsError` when it runs out."""
        deadline = time.monotonic() + self._config.timeout
        key = str(uuid.uuid4()) if idempotent else None
        attempt = 0
        last = "no attempt made"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReinsError(f"no answer within {self._config.timeout} s ({last})")
            response = None
            try:
                response = self._http.request(
                    method,
                    self._config.base_url + path,
                    json=body,
                    headers=self._config.headers(key),
                    timeout=left,
                )
                if response.status_code not in RETRYABLE:
                    return response
                last = _error_text(response)
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
            wait = _retry_after(response, attempt)
            if time.monotonic() + wait >= deadline:
                raise ReinsError(f"no answer within {self._config.timeout} s ({last})")
            time.sleep(wait)
            attempt += 1

    def _try(
        self, method: str, path: str, body: Any = None, *, idempotent: bool = False
    ) -> httpx.Response | ReinsError:
        """`_send`, with running out of time (or any refusal of the call) as a value."""
        try:
            return self._send(method, path, body, idempotent=idempotent)
        except ReinsError as e:
            return e

    def decide(
        self,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        action: str = "invoke",
        resource_type: str = "Tool",
        session_id: str | None = None,
        approval_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        intent: str | None = None,
        trace: Mapping[str, Any] | None = None,
        compensates: str | None = None,
    ) -> Decision:
        """Asks whether the token's agent may call `tool` with `args`. Never raises for a deny or
        a failure: Reins's answer, or a deny with reason `unreachable`."""
        body = decision_body(
            tool,
            args,
            action=action,
            resource_type=resource_type,
            session_id=session_id,
            approval_id=approval_id,
            context=context,
            intent=intent,
            trace=trace,
            compensates=compensates,
        )
        return self._config.read_decision(self._try("POST", "/v1/decisions", body, idempotent=True))

    def batch(self, requests: list[dict[str, Any]]) -> list[Decision]:
        """Several requests in one call (`decision_body` builds each); all deny on failure."""
        answer = self._try("POST", "/v1/decisions/batch", {"requests": requests}, idempotent=True)
        return self._config.read_decisions(answer, len(requests))

    def approval(self, approval_id: str) -> Approval:
        """The approval's current state; raises `ReinsError` when it cannot be read."""
        answer = self._try("GET", f"/v1/approvals/{approval_id}")
        return self._config.read_approval(answer, approval_id)

    def wait_for_approval(self, approval_id: str, *, poll: float = 0.5) -> Approval:
        """Polls until the approval is decided or expires (backoff with jitter, capped at
        `poll` x 8); returns it in its final state."""
        delay = poll
        while True:
            try:
                approval = self.approval(approval_id)
            except ReinsError as e:
                log.debug("reins: polling approval %s: %s", approval_id, e)
            else:
                if approval.status != ApprovalStatus.PENDING or time.time() >= expiry(approval):
                    return approval
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, poll * 8)

    def outcome(
        self,
        decision_id: str,
        status: str,
        *,
        summary: str | None = None,
        result_sha256: str | None = None,
    ) -> bool:
        """Reports what came of an allowed call (`succeeded`, `failed`, `partial`,
        `not_executed`); True if Reins recorded it. Never raises: a lost report is logged."""
        body = _outcome_body(status, summary, result_sha256)
        answer = self._try("POST", f"/v1/decisions/{decision_id}/outcome", body)
        return self._config.read_outcome(answer, decision_id)

    def evaluate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """An AuthZEN 1.0 evaluation (`POST /access/v1/evaluation`), for policy enforcement
        points; a `false` decision on any failure."""
        return self._config.read_evaluation(
            self._try("POST", "/access/v1/evaluation", dict(request))
        )


class AsyncReins:
    """The asynchronous client: the same calls as `Reins`, as coroutines."""

    def __init__(
        self,
        base_url: str | None = None,
        token: TokenSource | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        fail_open: bool = False,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = _Config(base_url, token, timeout, fail_open)
        self._http = http or httpx.AsyncClient()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncReins:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(
        self, method: str, path: str, body: Any = None, *, idempotent: bool = False
    ) -> httpx.Response:
        deadline = time.monotonic() + self._config.timeout
        key = str(uuid.uuid4()) if idempotent else None
        attempt = 0
        last = "no attempt made"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReinsError(f"no answer within {self._config.timeout} s ({last})")
            response = None
            try:
                response = await asyncio.wait_for(
                    self._http.request(
                        method,
                        self._config.base_url + path,
                        json=body,
                        headers=self._config.headers(key),
                        timeout=left,
                    ),
                    timeout=left,
                )
                if response.status_code not in RETRYABLE:
                    return response
                last = _error_text(response)
            except (httpx.TransportError, asyncio.TimeoutError) as e:
                last = f"{type(e).__name__}: {e}"
            wait = _retry_after(response, attempt)
            if time.monotonic() + wait >= deadline:
                raise ReinsError(f"no answer within {self._config.timeout} s ({last})")
            await asyncio.sleep(wait)
            attempt += 1

    async def _try(
        self, method: str, path: str, body: Any = None, *, idempotent: bool = False
    ) -> httpx.Response | ReinsError:
        """`_send`, with running out of time (or any refusal of the call) as a value."""
        try:
            return await self._send(method, path, body, idempotent=idempotent)
        except ReinsError as e:
            return e

    async def decide(
        self,
        tool: str,
        args: Mapping[str, Any] | None = None,
        *,
        action: str = "invoke",
        resource_type: str = "Tool",
        session_id: str | None = None,
        approval_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        intent: str | None = None,
        trace: Mapping[str, Any] | None = None,
        compensates: str | None = None,
    ) -> Decision:
        """See `Reins.decide`."""
        body = decision_body(
            tool,
            args,
            action=action,
            resource_type=resource_type,
            session_id=session_id,
            approval_id=approval_id,
            context=context,
            intent=intent,
            trace=trace,
            compensates=compensates,
        )
        return self._config.read_decision(
            await self._try("POST", "/v1/decisions", body, idempotent=True)
        )

    async def batch(self, requests: list[dict[str, Any]]) -> list[Decision]:
        """See `Reins.batch`."""
        answer = await self._try(
            "POST", "/v1/decisions/batch", {"requests": requests}, idempotent=True
        )
        return self._config.read_decisions(answer, len(requests))

    async def approval(self, approval_id: str) -> Approval:
        """See `Reins.approval`."""
        answer = await self._try("GET", f"/v1/approvals/{approval_id}")
        return self._config.read_approval(answer, approval_id)

    async def wait_for_approval(self, approval_id: str, *, poll: float = 0.5) -> Approval:
        """See `Reins.wait_for_approval`."""
        delay = poll
        while True:
            try:
                approval = await self.approval(approval_id)
            except ReinsError as e:
                log.debug("reins: polling approval %s: %s", approval_id, e)
            else:
                if approval.status != ApprovalStatus.PENDING or time.time() >= expiry(approval):
                    return approval
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, poll * 8)

    async def outcome(
        self,
        decision_id: str,
        status: str,
        *,
        summary: str | None = None,
        result_sha256: str | None = None,
    ) -> bool:
        """See `Reins.outcome`."""
        body = _outcome_body(status, summary, result_sha256)
        answer = await self._try("POST", f"/v1/decisions/{decision_id}/outcome", body)
        return self._config.read_outcome(answer, decision_id)

    async def evaluate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """See `Reins.evaluate`."""
        return self._config.read_evaluation(
            await self._try("POST", "/access/v1/evaluation", dict(request))
        )
