"""A real `reins serve` for the session: the built binary, a temporary data dir, tokens minted
with `reins token mint`, a small registry. Nothing is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]


def reins_env() -> dict[str, str]:
    """The environment for `reins` commands: this one without its `REINS_*` variables, which the
    CLI would read as configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REINS_")}


def reins_binary() -> Path:
    path = Path(os.environ.get("REINS_TEST_BIN", REPO / "target" / "debug" / "reins"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build` first (or set REINS_TEST_BIN)")
    return path


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[str]
    tokens: dict[str, str] = field(default_factory=dict)

    def mint(self, agent: str, *, roles: str = "", on_behalf_of: str | None = None) -> str:
        args = [
            str(reins_binary()),
            "token",
            "mint",
            "--data-dir",
            str(self.data_dir),
            "--agent",
            agent,
        ]
        if roles:
            args += ["--roles", roles]
        if on_behalf_of:
            args += ["--on-behalf-of", on_behalf_of]
        done = subprocess.run(args, capture_output=True, text=True, env=reins_env())
        assert done.returncode == 0, f"reins token mint failed: {done.stderr}"
        return done.stdout.strip()

    def put(self, path: str, body: dict[str, object]) -> None:
        r = httpx.put(
            self.url + path, json=body, headers={"Authorization": f"Bearer {self.tokens['admin']}"}
        )
        assert r.status_code in (200, 201), r.text

    def post(self, path: str, token: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers={"Authorization": f"Bearer {token}"})

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {token}"})

    def ledger_entries(self) -> int:
        r = self.get("/v1/decisions?limit=1000", self.tokens["admin"])
        assert r.status_code == 200, r.text
        return len(r.json()["decisions"])

    def grant_soon(self, approval_id: str, delay: float = 0.3) -> threading.Thread:
        """An approver grants `approval_id` from another thread after `delay`."""

        def grant() -> None:
            time.sleep(delay)
            r = self.post(
                f"/v1/approvals/{approval_id}/grant", self.tokens["approver"], {"comment": "ok"}
            )
            assert r.status_code == 200, r.text

        thread = threading.Thread(target=grant)
        thread.start()
        return thread


def start(data_dir: Path, config: Path | None = None) -> Server:
    process = subprocess.Popen(
        [
            str(reins_binary()),
            "serve",
            *(["--config", str(config)] if config else []),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--policy-dir",
            str(REPO / "policies"),
            "--schema-file",
            str(REPO / "schemas" / "reins.cedarschema"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("REINS_")},
            "REINS_LOG_FORMAT": "json",
        },
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:
        try:
            fields = json.loads(line).get("fields", {})
        except ValueError:
            continue
        if fields.get("message") == "listening":
            url = f"http://{fields['addr']}"
            break
        if time.monotonic() > deadline:
            break
    else:
        pytest.fail("reins serve did not start")
    # Keep draining its output so it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in process.stdout or []], daemon=True).start()
    return Server(url=url, data_dir=data_dir, process=process)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        s = start(Path(tmp) / "data")
        s.tokens["admin"] = s.mint("ops", roles="admin,operator,auditor")
        s.tokens["approver"] = s.mint("bob", roles="approver")
        for tool, risk in [
            ("crm.note", "medium"),
            ("payments.refund", "high"),
            ("search.web", "low"),
        ]:
            s.put(f"/v1/tools/{tool}", {"description": tool, "risk": risk, "category": "test"})
        s.put(
            "/v1/agents/refund-bot",
            {
                "name": "Refund bot",
                "owner": "payments",
                "risk_tier": "limited",
                "tools": ["crm.note", "payments.refund", "search.web"],
            },
        )
        s.tokens["agent"] = s.mint("refund-bot", on_behalf_of="alice")
        try:
            yield s
        finally:
            s.process.terminate()
            s.process.wait(timeout=20)
