"""The console in a real browser: sign in with a one-time link, the fleet as it stands, sign-out
that ends the session on the server, and the refusals a console owes its users (a used link, an
API token as a link, a form without its CSRF token, a person without a console role)."""

from __future__ import annotations

import time

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import Server, reins, screenshot


def cookie_of(browser) -> str:  # type: ignore[no-untyped-def]
    cookie = browser.get_cookie("reins_console")
    assert cookie is not None, "no session cookie"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    return str(cookie["value"])


def test_sign_in_see_the_fleet_and_sign_out(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    r = server.api(
        "POST",
        "/v1/killswitch",
        server.tokens["operator"],
        {"scope": {"agent": "notes-bot"}, "reason": "runaway loop"},
    )
    assert r.status_code == 201, r.text
    switch = r.json()["id"]
    try:
        browser.get(server.link("cora", "auditor,operator"))
        assert browser.current_url == f"{server.url}/console"
        assert browser.find_element(By.TAG_NAME, "h1").text == "Fleet"
        assert "Signed in as cora" in browser.find_element(By.CLASS_NAME, "who").text
        agents = browser.find_element(By.XPATH, "//table[caption='Registered agents']").text
        assert "refund-bot" in agents and "notes-bot" in agents
        # Each agent's checklist in brief, linking to its page.
        brief = browser.find_element(
            By.XPATH, "//table[caption='Registered agents']//tr[.//code[text()='refund-bot']]/td[last()]/a"
        )
        assert brief.get_attribute("href").endswith("/console/agents/refund-bot")
        assert any(word in brief.text for word in ["satisfied", "attestation required", "supporting evidence"]), brief.text
        stopped = browser.find_elements(By.CSS_SELECTOR, "tr.stopped")
        assert any("notes-bot" in row.text for row in stopped)
        assert "runaway loop" in browser.find_element(By.XPATH, "//table[caption='Engaged kill switches']").text
        tools = browser.find_element(By.XPATH, "//table[caption='Registered tools and their risk']").text
        assert "payments.refund high" in tools
        screenshot(browser, "fleet")
        session = cookie_of(browser)

        browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
        # A click posts the form; the next page loads after it returns.
        WebDriverWait(browser, 10).until(expected_conditions.url_contains("/console/sign-in"))
        assert "You are signed out." in browser.page_source
        screenshot(browser, "signed-out")
        browser.get(f"{server.url}/console")
        assert browser.current_url.startswith(f"{server.url}/console/sign-in")

        # The cookie itself is refused now, not only forgotten by the browser.
        r = httpx.get(f"{server.url}/console", cookies={"reins_console": session})
        assert r.status_code == 303 and r.headers["location"].startswith("/console/sign-in")
    finally:
        server.api("DELETE", f"/v1/killswitch/{switch}", server.tokens["operator"], {"reason": "done"})


def test_a_link_signs_in_once_and_an_api_token_is_no_link(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    link = server.link("olga", "compliance_officer")
    browser.get(link)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Fleet"
    browser.delete_all_cookies()
    browser.get(link)
    assert "used already" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    screenshot(browser, "link-used")
    token = server.mint("olga", "compliance_officer")
    browser.get(f"{server.url}/console/sign-in/link?token={token}")
    assert "not valid" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text


def test_forms_need_their_csrf_token_and_pages_need_a_role(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    browser.get(server.link("mallory", "auditor"))
    session = cookie_of(browser)
    jar = {"reins_console": session}
    r = httpx.post(f"{server.url}/console/sign-out", cookies=jar, data={"csrf": "forged"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = httpx.post(f"{server.url}/console/sign-out", cookies=jar, data={})
    assert r.status_code == 403
    # Still signed in: the forged form changed nothing.
    r = httpx.get(f"{server.url}/console", cookies=jar)
    assert r.status_code == 200 and "Signed in as" in r.text
    # Without a session, a form post is refused, not redirected.
    assert httpx.post(f"{server.url}/console/sign-out", data={"csrf": "x"}).status_code == 403

    browser.delete_all_cookies()
    browser.get(server.link("visitor", "nobody"))
    assert "Forbidden" in browser.find_element(By.TAG_NAME, "h1").text
    screenshot(browser, "no-role")


def test_pages_carry_a_strict_content_security_policy(server: Server) -> None:
    for path in ["/console/sign-in", "/console", "/console/no-such-page"]:
        r = httpx.get(server.url + path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert r.headers["x-frame-options"] == "DENY"
    assert httpx.get(f"{server.url}/console/no-such-page").status_code == 404


def test_odd_addresses_get_pages_not_crashes(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    browser.get(server.link("otto", "auditor"))
    jar = {"reins_console": browser.get_cookie("reins_console")["value"]}
    for path, status in [
        ("/console/ledger/entries/18446744073709551615", 404),
        ("/console/ledger/entries/-1", 404),
        ("/console/decisions/not-an-id", 404),
        ("/console/decisions?from=yesterday", 400),
        ("/console/policies/not-a-version", 404),
        ("/console/policies/diff?from=a&to=b", 400),
        ("/console/ledger/consistency?from=5&to=2", 400),
        ("/console/agents/nobody", 404),
    ]:
        r = httpx.get(server.url + path, cookies=jar)
        assert r.status_code == status, (path, r.status_code, r.text[:200])
    # The server is still answering.
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_an_approval_appears_live_and_is_granted_from_the_queue(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    agent = server.mint("refund-bot")
    browser.get(server.link("alice", "approver"))
    browser.get(f"{server.url}/console/approvals")
    assert "Nothing is waiting." in browser.page_source or "Waiting" in browser.page_source

    refund = {
        "action": "invoke",
        "resource": {"type": "Tool", "id": "payments.refund"},
        "context": {"args": {"amount": 4321, "currency": "EUR"}},
        "intent": "customer 881 was charged twice",
    }
    asked = server.api("POST", "/v1/decisions", agent, refund).json()
    approval = asked["access_request"]["approval_id"]
    # It appears without a reload: the queue refreshes itself.
    item = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.ID, f"approval-{approval}"))
    )
    assert "4321" in item.text and "customer 881 was charged twice" in item.text
    assert "approval-high-risk-tools" in item.text
    screenshot(browser, "approvals")

    item.find_element(By.NAME, "comment").send_keys("duplicate charge confirmed")
    # The queue refreshes every 2 s meanwhile; what the approver typed stays.
    time.sleep(2.5)
    item = browser.find_element(By.ID, f"approval-{approval}")
    assert item.find_element(By.NAME, "comment").get_attribute("value") == "duplicate charge confirmed"
    item.find_element(By.XPATH, ".//button[@value='grant']").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("done="))
    assert "Granted the approval for refund-bot" in browser.page_source

    retried = server.api("POST", "/v1/decisions", agent, {**refund, "approval_id": approval}).json()
    assert retried["decision"] == "allow", retried
    decided = server.api("GET", f"/v1/approvals/{approval}", server.tokens["admin"]).json()
    assert decided["decided_by"] == "alice" and decided["comment"] == "duplicate charge confirmed"


def test_a_kill_switch_is_engaged_and_released_from_the_page(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    agent = server.mint("refund-bot")
    note = {"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}}
    browser.get(server.link("oscar", "operator"))
    browser.get(f"{server.url}/console/killswitch")

    # Everything, without typing the confirmation: refused, nothing engaged.
    browser.find_element(By.ID, "reason").send_keys("stop it all")
    browser.find_element(By.XPATH, "//button[text()='Engage']").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("error="))
    assert "type `global` to confirm" in browser.page_source
    assert server.api("POST", "/v1/decisions", agent, note).json()["decision"] == "allow"

    Select(browser.find_element(By.ID, "agent")).select_by_value("refund-bot")
    browser.find_element(By.ID, "reason").send_keys("refunds to strangers")
    browser.find_element(By.XPATH, "//button[text()='Engage']").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("done="))
    screenshot(browser, "killswitch")
    denied = server.api("POST", "/v1/decisions", agent, note).json()
    assert denied["decision"] == "deny" and denied["reasons"][0]["code"] == "kill_switch", denied
    switches = server.api("GET", "/v1/killswitch", server.tokens["admin"]).json()["engaged"]
    assert switches[0]["engaged_by"] == "oscar"

    browser.find_element(By.CSS_SELECTOR, "article.switch input[name=reason]").send_keys("fixed")
    browser.find_element(By.XPATH, "//button[text()='Release']").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("done="))
    assert server.api("POST", "/v1/decisions", agent, note).json()["decision"] == "allow"


def test_the_control_policy_decides_what_a_person_may_do(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    # An auditor reads the kill switch page but may not engage: the control policy refuses.
    browser.get(server.link("audrey", "auditor"))
    browser.get(f"{server.url}/console/killswitch")
    Select(browser.find_element(By.ID, "agent")).select_by_value("refund-bot")
    browser.find_element(By.ID, "reason").send_keys("curious")
    browser.find_element(By.XPATH, "//button[text()='Engage']").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("error="))
    assert "control policy does not permit" in browser.page_source
    assert server.api("GET", "/v1/killswitch", server.tokens["admin"]).json()["engaged"] == []
    # An operator may not read the approval queue.
    browser.delete_all_cookies()
    browser.get(server.link("oscar2", "operator"))
    browser.get(f"{server.url}/console/approvals")
    assert "Forbidden" in browser.find_element(By.TAG_NAME, "h1").text


def test_a_decision_is_explained_and_verified_in_the_browser(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    agent = server.mint("refund-bot")
    allowed = server.api(
        "POST",
        "/v1/decisions",
        agent,
        {"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}, "context": {"args": {"text": "hi"}}},
    ).json()
    denied = server.api(
        "POST",
        "/v1/decisions",
        agent,
        {"action": "invoke", "resource": {"type": "Tool", "id": "shell.exec"}},
    ).json()
    assert allowed["decision"] == "allow" and denied["decision"] == "deny"
    time.sleep(1.5)  # the checkpoint covering them is signed within a second

    browser.get(server.link("rita", "reviewer"))
    browser.get(f"{server.url}/console/decisions?outcome=deny&agent=refund-bot")
    page = browser.page_source
    assert f"/console/decisions/{denied['decision_id']}" in page
    assert f"/console/decisions/{allowed['decision_id']}" not in page
    answers = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "td.answer-deny, td.answer-allow")]
    assert answers and set(answers) == {"deny"}, answers
    screenshot(browser, "decisions")

    browser.get(f"{server.url}/console/decisions/{allowed['decision_id']}")
    result = WebDriverWait(browser, 10).until(
        lambda b: b.find_element(By.ID, "verify-result")
        if "pending" not in b.find_element(By.ID, "verify-result").get_attribute("class")
        else False
    )
    assert result.text.startswith("Verified in your browser"), result.text
    page = browser.page_source
    assert "declared-tools" in page and "An agent may call only the tools it declared" in page
    assert '"text": "hi"' in page
    screenshot(browser, "decision-verified")

    # A proof that does not lead to the signed root fails, in the browser too.
    browser.execute_script(
        "const el = document.getElementById('proof');"
        "el.dataset.entry = btoa('{\"tampered\":true}');"
    )
    browser.find_element(By.ID, "verify-again").click()
    WebDriverWait(browser, 10).until(
        lambda b: "failed" in b.find_element(By.ID, "verify-result").get_attribute("class")
    )
    assert "Does NOT verify" in browser.find_element(By.ID, "verify-result").text
    screenshot(browser, "decision-tampered")


def test_the_fleet_shows_overdue_incidents(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    officer = server.mint("olga", "compliance_officer")
    r = server.api(
        "POST",
        "/v1/incidents",
        officer,
        {
            "severity": "serious_harm",
            "summary": "refunds paid twice",
            "agents": ["refund-bot"],
            "aware_at": "2026-01-05T00:00:00Z",
        },
    )
    assert r.status_code == 201, r.text
    incident = r.json()["id"]
    try:
        browser.get(server.link("cora", "auditor"))
        alert = browser.find_element(By.XPATH, "//section[@aria-labelledby='incidents']//p[@role='alert']")
        assert "overdue" in alert.text
        table = browser.find_element(By.XPATH, "//table[caption='Incidents not closed']").text
        assert "refunds paid twice" in table and "overdue" in table
    finally:
        server.api("POST", f"/v1/incidents/{incident}/close", officer, {"note": "test over"})


def test_an_officer_attests_follows_evidence_to_the_ledger_and_downloads_a_pack(server: Server, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]
    browser.get(server.link("cora", "compliance_officer"))
    browser.find_element(By.LINK_TEXT, "Refund Bot").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("/console/agents/refund-bot"))
    assert "EU AI Act checklist" in browser.page_source
    Select(browser.find_element(By.ID, "item")).select_by_value("art4-ai-literacy")
    browser.find_element(By.ID, "statement").send_keys("Payments team trained on 2026-11-02")
    browser.find_element(By.XPATH, "//button[text()='Record the attestation']").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("done="))
    assert "Attested art4-ai-literacy" in browser.page_source
    screenshot(browser, "agent")

    time.sleep(1.5)  # the checkpoint covering the attestation is signed within a second
    browser.refresh()
    row = browser.find_element(By.ID, "item-art4-ai-literacy")
    assert "attested" in row.text
    row.find_element(By.PARTIAL_LINK_TEXT, "ledger entry").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_contains("/console/ledger/entries/"))
    assert "attestation_recorded" in browser.page_source
    result = WebDriverWait(browser, 10).until(
        lambda b: b.find_element(By.ID, "verify-result")
        if "pending" not in b.find_element(By.ID, "verify-result").get_attribute("class")
        else False
    )
    assert result.text.startswith("Verified in your browser"), result.text
    screenshot(browser, "ledger-entry")

    # The pack the page offers, fetched with the page's own session, verifies offline.
    session = browser.get_cookie("reins_console")["value"]
    r = httpx.get(
        f"{server.url}/console/agents/refund-bot/audit-pack",
        cookies={"reins_console": session},
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text[:200]
    pack = tmp_path / "pack.zip"
    pack.write_bytes(r.content)
    key = reins("ledger", "key", "--data-dir", str(server.data_dir))
    assert "ok:" in reins("audit-pack", "verify", str(pack), "--key", key)

    browser.get(f"{server.url}/console/ledger")
    assert "Latest signed checkpoint" in browser.page_source
    screenshot(browser, "ledger")


def test_the_ledger_page_checks_in_the_browser_that_the_ledger_only_grew(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    def checked() -> str:
        result = WebDriverWait(browser, 10).until(
            lambda b: b.find_element(By.ID, "ledger-result")
            if "pending" not in b.find_element(By.ID, "ledger-result").get_attribute("class")
            else False
        )
        return str(result.text)

    browser.get(server.link("ivy", "auditor"))
    time.sleep(1.2)  # the checkpoint covering the sign-in is signed within a second
    browser.get(f"{server.url}/console/ledger")
    first = checked()
    assert first.startswith("Verified in your browser") and "had not seen the ledger before" in first, first

    # The ledger grows; on the next visit the browser proves the old one is a prefix of it.
    agent = server.mint("notes-bot")
    for _ in range(5):
        server.api("POST", "/v1/decisions", agent, {"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}})
    time.sleep(1.2)
    browser.get(f"{server.url}/console/ledger")
    second = checked()
    assert "is a prefix of it" in second, second
    screenshot(browser, "ledger-verified")

    # A remembered ledger that this one does not extend (another root at a smaller size): caught.
    browser.execute_script(
        "const k = Object.keys(localStorage).find(k => k.startsWith('reins-ledger:'));"
        "const seen = JSON.parse(localStorage.getItem(k));"
        "seen.size = seen.size - 3; seen.root = btoa(String.fromCharCode(...new Uint8Array(32).fill(7)));"
        "localStorage.setItem(k, JSON.stringify(seen));"
    )
    browser.find_element(By.ID, "ledger-verify").click()
    WebDriverWait(browser, 10).until(lambda b: "failed" in b.find_element(By.ID, "ledger-result").get_attribute("class"))
    assert "is not a prefix" in browser.find_element(By.ID, "ledger-result").text


def test_a_reason_filter_finds_decisions_older_than_the_newest_page(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    r = server.api(
        "POST", "/v1/killswitch", server.tokens["operator"], {"scope": {"agent": "refund-bot"}, "reason": "paging test"}
    )
    assert r.status_code == 201, r.text
    try:
        stopped = server.api(
            "POST",
            "/v1/decisions",
            server.mint("refund-bot"),
            {"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}},
        ).json()
        assert stopped["reasons"][0]["code"] == "kill_switch", stopped
    finally:
        server.api("DELETE", f"/v1/killswitch/{r.json()['id']}", server.tokens["operator"], {"reason": "done"})
    # More than a page of newer decisions with other reasons.
    notes = server.mint("notes-bot")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {notes}"}) as client:
        for _ in range(210):
            client.post("/v1/decisions", json={"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}})
    browser.get(server.link("rhea", "reviewer"))
    browser.get(f"{server.url}/console/decisions?reason=kill_switch")
    assert f"/console/decisions/{stopped['decision_id']}" in browser.page_source


def test_the_fleet_counts_each_agents_decisions_and_denials(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    r = server.api(
        "PUT",
        "/v1/agents/counted-bot",
        server.tokens["admin"],
        {"name": "Counted Bot", "owner": "ops", "risk_tier": "minimal", "tools": ["crm.note"]},
    )
    assert r.status_code in (200, 201), r.text
    token = server.mint("counted-bot")
    for tool in ["crm.note", "crm.note", "shell.exec"]:
        server.api("POST", "/v1/decisions", token, {"action": "invoke", "resource": {"type": "Tool", "id": tool}})
    browser.get(server.link("fay", "auditor"))
    row = browser.find_element(By.XPATH, "//table[caption='Registered agents']//tr[.//code[text()='counted-bot']]")
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    # Owner, tier, status, decisions, denied, pending approvals, ...
    assert cells[3:5] == ["3", "33.3%"], cells
