"""A real `reins serve` and a real headless Chromium for the console's tests. Nothing is mocked:
people sign in with links from `reins console-link`, agents ask through the API with tokens from
`reins token mint`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "target" / "console-screenshots"


def reins_binary() -> Path:
    path = Path(os.environ.get("REINS_TEST_BIN", REPO / "target" / "debug" / "reins"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build` first (or set REINS_TEST_BIN)")
    return path


def reins(*args: str) -> str:
    """Runs `reins`, without the caller's REINS_* variables (the CLI reads them as configuration)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REINS_")}
    done = subprocess.run([str(reins_binary()), *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"reins {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[str]
    tokens: dict[str, str] = field(default_factory=dict)

    def mint(self, agent: str, roles: str = "") -> str:
        args = ["token", "mint", "--data-dir", str(self.data_dir), "--agent", agent]
        return reins(*args, *(["--roles", roles] if roles else []))

    def link(self, user: str, roles: str) -> str:
        return reins(
            "console-link",
            "--data-dir",
            str(self.data_dir),
            "--user",
            user,
            "--roles",
            roles,
            "--base-url",
            self.url,
        )

    def api(self, method: str, path: str, token: str, body: object = None) -> httpx.Response:
        return httpx.request(
            method, self.url + path, json=body, headers={"Authorization": f"Bearer {token}"}
        )


def start(data_dir: Path, config: Path | None = None, listen: str = "127.0.0.1:0") -> Server:
    """`reins serve` on `listen` (default: a free port), with `config` as its `--config` file."""
    process = subprocess.Popen(
        [
            str(reins_binary()),
            *(["--config", str(config)] if config else []),
            "serve",
            "--listen",
            listen,
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
    url = None
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
    if url is None:
        pytest.fail("reins serve did not start")
    threading.Thread(target=lambda: [None for _ in process.stdout or []], daemon=True).start()
    return Server(url=url, data_dir=data_dir, process=process)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        s = start(Path(tmp))
        try:
            s.tokens["admin"] = s.mint("ops", "admin,auditor")
            s.tokens["operator"] = s.mint("oncall", "operator")
            for tool, risk in [("crm.note", "medium"), ("payments.refund", "high")]:
                r = s.api(
                    "PUT",
                    f"/v1/tools/{tool}",
                    s.tokens["admin"],
                    {"description": f"{tool} tool", "risk": risk, "category": "test"},
                )
                assert r.status_code in (200, 201), r.text
            for agent in ["refund-bot", "notes-bot"]:
                r = s.api(
                    "PUT",
                    f"/v1/agents/{agent}",
                    s.tokens["admin"],
                    {
                        "name": agent.replace("-", " ").title(),
                        "owner": "payments-team",
                        "risk_tier": "limited",
                        "tools": ["crm.note", "payments.refund"],
                    },
                )
                assert r.status_code in (200, 201), r.text
            yield s
        finally:
            s.process.terminate()
            s.process.wait(timeout=30)


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or shutil.which("chromium-driver")
    if not browser or not driver:
        pytest.fail(
            "the console tests need Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver); .ci/run installs them"
        )
    return browser, driver


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    binary, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(30)
    try:
        yield chrome
    finally:
        chrome.quit()


def screenshot(browser: webdriver.Chrome, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
