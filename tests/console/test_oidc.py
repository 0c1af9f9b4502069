"""Sign-in through a real OpenID Connect provider: oidc-provider-mock, started as its own process,
serves discovery, its login form, codes, tokens and signed ID tokens; Reins is configured with it
as `console.oidc`. The provider runs on `localhost` and Reins on `127.0.0.1`, so the browser comes
back from the provider on a cross-site navigation, as it does in production.

Besides the happy path: a wrong `state`, a replayed answer, a code spent twice, a refusal at the
provider, a person without a role, a session that expires, and a cookie planted before sign-in
that must not become the session (session fixation)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import Server, screenshot, start

IDLE_SECONDS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """oidc-provider-mock as a process; its issuer is `http://localhost:PORT`."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    issuer = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("oidc-provider-mock did not start")
            time.sleep(0.1)
        yield issuer
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def oidc_server(provider: str) -> Iterator[Server]:
    """A `reins serve` whose console signs people in with the provider; sessions idle out fast."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        # The redirect URL must name the port Reins will listen on, so pick it first.
        port = free_port()
        secret = data_dir / "oidc-client-secret"
        secret.write_text("a-secret-the-provider-shares\n")
        config = data_dir / "reins.toml"
        config.write_text(
            f"""
[console]
idle_timeout = "{IDLE_SECONDS}s"
[console.oidc]
issuer = "{provider}"
name = "Example SSO"
client_id = "reins-console"
client_secret_file = "{secret}"
redirect_url = "http://127.0.0.1:{port}/console/oidc/callback"
"""
        )
        s = start(data_dir, config, listen=f"127.0.0.1:{port}")
        try:
            yield s
        finally:
            s.process.terminate()
            s.process.wait(timeout=30)


def person(provider: str, sub: str, roles: object) -> None:
    """What the provider will say about `sub` (its ID token carries these claims)."""
    r = httpx.put(f"{provider}/users/{quote(sub)}", json={"email": sub, "roles": roles})
    assert r.status_code == 204, r.text


def session_of(cookie: str) -> dict[str, object]:
    """The session a cookie carries (`v1.<payload>.<tag>`; signed, not secret)."""
    payload = cookie.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sign_in_at_provider(browser, server: Server, sub: str) -> str:  # type: ignore[no-untyped-def]
    """From the sign-in page through the provider's form; the authorization URL it went to."""
    browser.get(f"{server.url}/console/sign-in")
    browser.find_element(By.LINK_TEXT, "Sign in with Example SSO").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("/oauth2/authorize"))
    authorize = str(browser.current_url)
    browser.find_element(By.CSS_SELECTOR, "input[name=sub]").send_keys(sub)
    browser.find_element(By.XPATH, "//button[text()='Authorize']").click()
    return authorize


def test_a_person_signs_in_with_the_provider_and_pkce(oidc_server: Server, provider: str, browser) -> None:  # type: ignore[no-untyped-def]
    person(provider, "dana@example.com", ["operator", "auditor"])
    authorize = sign_in_at_provider(browser, oidc_server, "dana@example.com")
    query = parse_qs(urlparse(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["client_id"] == ["reins-console"]
    assert query["state"][0] and query["nonce"][0]
    assert "openid" in query["scope"][0].split()

    # Back at Reins: the fleet, under the provider's name for the person, with its roles.
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(f"{oidc_server.url}/console"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Fleet"
    who = browser.find_element(By.CLASS_NAME, "who").text
    assert "Signed in as dana@example.com (auditor, operator)" in who
    screenshot(browser, "oidc-signed-in")
    # The sign-in cookie is spent; the session cookie is Strict.
    assert browser.get_cookie("reins_console_oidc") is None
    assert browser.get_cookie("reins_console")["sameSite"] == "Strict"

    # The sign-in is in the ledger under the person's name, with its method.
    admin = oidc_server.mint("ops", "admin,auditor")
    r = oidc_server.api("GET", "/v1/ledger/entries?start=0&end=1000", admin)
    assert r.status_code == 200, r.text
    entries = [json.dumps(e["entry"]) for e in r.json()["entries"]]
    assert any(
        '"console_signed_in"' in e and '"dana@example.com"' in e and '"method": "oidc"' in e for e in entries
    ), entries


def start_flow(server: Server) -> tuple[httpx.Client, str]:
    """A sign-in started outside a browser: the client holding the sign-in cookie, and the
    provider's authorization URL."""
    client = httpx.Client(base_url=server.url)
    r = client.get("/console/oidc/start")
    assert r.status_code == 303, r.text
    return client, r.headers["location"]


def answer(authorize: str, **form: str) -> dict[str, list[str]]:
    """What the provider sends back for a person filling in its form: the callback's query."""
    r = httpx.post(authorize, data=form)
    assert r.status_code == 302, r.text
    return parse_qs(urlparse(r.headers["location"]).query)


def test_a_wrong_state_a_replay_and_a_spent_code_are_refused(oidc_server: Server, provider: str) -> None:
    person(provider, "erin@example.com", ["approver"])

    # A state that is not this browser's: refused, and that sign-in is over.
    client, authorize = start_flow(oidc_server)
    back = answer(authorize, sub="erin@example.com")
    r = client.get("/console/oidc/callback", params={"code": back["code"][0], "state": "forged-state"})
    assert r.status_code == 400 and "state does not match" in r.text
    assert "reins_console" not in client.cookies
    r = client.get("/console/oidc/callback", params={"code": back["code"][0], "state": back["state"][0]})
    assert r.status_code == 400 and "no sign-in was started" in r.text

    # The right answer signs in once; the same answer again (its sign-in cookie kept) does not.
    client, authorize = start_flow(oidc_server)
    kept = dict(client.cookies)
    back = answer(authorize, sub="erin@example.com")
    callback = {"code": back["code"][0], "state": back["state"][0]}
    r = client.get("/console/oidc/callback", params=callback)
    assert r.status_code == 200 and "signed in as <strong>erin@example.com</strong>" in r.text
    session = r.cookies["reins_console"]
    assert session_of(session)["roles"] == ["approver"]
    replay = httpx.get(
        f"{oidc_server.url}/console/oidc/callback",
        params=callback,
        cookies={"reins_console_oidc": kept["reins_console_oidc"]},
    )
    assert replay.status_code == 401 and "completed already" in replay.text
    assert "reins_console=" not in replay.headers.get("set-cookie", "").replace("reins_console_oidc", "")

    # The spent code under a fresh sign-in's own state: the provider refuses it.
    client, authorize = start_flow(oidc_server)
    state = parse_qs(urlparse(authorize).query)["state"][0]
    r = client.get("/console/oidc/callback", params={"code": callback["code"], "state": state})
    assert r.status_code == 401 and "invalid_grant" in r.text

    # Without a sign-in cookie at all: refused.
    r = httpx.get(f"{oidc_server.url}/console/oidc/callback", params=callback)
    assert r.status_code == 400

    # An answer that names another issuer (RFC 9207): a mix-up, refused before the code is spent.
    client, authorize = start_flow(oidc_server)
    back = answer(authorize, sub="erin@example.com")
    r = client.get(
        "/console/oidc/callback",
        params={"code": back["code"][0], "state": back["state"][0], "iss": "https://evil.example"},
    )
    assert r.status_code == 400 and "another issuer" in r.text


def test_the_provider_refusing_or_giving_no_role_signs_no_one_in(oidc_server: Server, provider: str, browser) -> None:  # type: ignore[no-untyped-def]
    client, authorize = start_flow(oidc_server)
    back = answer(authorize, action="deny")
    r = client.get("/console/oidc/callback", params={k: v[0] for k, v in back.items()})
    assert r.status_code == 401 and "access_denied" in r.text

    person(provider, "frank@example.com", [])
    sign_in_at_provider(browser, oidc_server, "frank@example.com")
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("/console/oidc/callback"))
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert "no role the console is for" in alert
    assert browser.get_cookie("reins_console") is None
    screenshot(browser, "oidc-no-role")


def test_a_session_expires_when_idle(oidc_server: Server, provider: str, browser) -> None:  # type: ignore[no-untyped-def]
    person(provider, "gina@example.com", ["auditor"])
    sign_in_at_provider(browser, oidc_server, "gina@example.com")
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(f"{oidc_server.url}/console"))
    cookie = browser.get_cookie("reins_console")["value"]
    # The session's own idle limit, not the browser's cookie expiry, ends it.
    time.sleep(IDLE_SECONDS + 1)
    r = httpx.get(f"{oidc_server.url}/console", cookies={"reins_console": cookie})
    assert r.status_code == 303 and r.headers["location"] == "/console/sign-in?expired=1"
    browser.get(f"{oidc_server.url}/console")
    assert "Your session ended" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text


def test_a_cookie_planted_before_sign_in_is_replaced_not_adopted(oidc_server: Server, provider: str, browser) -> None:  # type: ignore[no-untyped-def]
    # An attacker's own valid session, planted in the victim's browser.
    browser.get(oidc_server.link("attacker", "auditor"))
    planted = browser.get_cookie("reins_console")["value"]
    browser.delete_all_cookies()
    browser.get(f"{oidc_server.url}/console/sign-in")
    browser.add_cookie({"name": "reins_console", "value": planted, "path": "/console"})

    person(provider, "hana@example.com", ["compliance_officer"])
    sign_in_at_provider(browser, oidc_server, "hana@example.com")
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(f"{oidc_server.url}/console"))
    after = browser.get_cookie("reins_console")["value"]
    assert session_of(after)["person"] == "hana@example.com"
    assert session_of(after)["id"] != session_of(planted)["id"]
    # The attacker's session is still only the attacker's: it learned nothing of hana's.
    r = httpx.get(f"{oidc_server.url}/console", cookies={"reins_console": planted})
    assert "Signed in as <strong>attacker</strong>" in r.text
