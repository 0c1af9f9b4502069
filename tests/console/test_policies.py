"""The policies page in a real browser: a policy admin sees the versions, compares two, runs the
policy tests, shadows a draft, replays it over the recorded decisions, activates it and rolls back;
an auditor reads but gets no buttons, and the control policy refuses a person who forges the form.
The uploaded version differs from the pack only by a comment, so activating it changes no answer
the other tests rely on."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import REPO, Server, screenshot


def active_version(server: Server, token: str) -> str:
    versions = server.api("GET", "/v1/policies", token).json()["versions"]
    return next(v["version"] for v in versions if v["state"] == "active")


def test_a_policy_admin_compares_tests_shadows_replays_activates_and_rolls_back(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    admin = server.mint("pat", "policy_admin")
    original = active_version(server, admin)
    files = {p.name: p.read_text() for p in sorted((REPO / "policies").glob("*.cedar"))}
    files["amount_cap.cedar"] += "// Reviewed by the payments team.\n"
    r = server.api("POST", "/v1/policies", admin, {"files": files})
    assert r.status_code in (200, 201), r.text
    draft = r.json()["version"]
    # Something to replay over.
    agent = server.mint("refund-bot")
    server.api("POST", "/v1/decisions", agent, {"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}})

    try:
        browser.get(server.link("pat", "policy_admin"))
        browser.get(f"{server.url}/console/policies")
        versions = browser.find_element(By.XPATH, "//table[caption='Versions']").text
        assert draft[-8:] in versions and original[-8:] in versions
        screenshot(browser, "policies")

        # The diff of the two: the comment, added, in amount_cap.cedar alone.
        browser.find_element(By.XPATH, "//button[text()='Compare']").click()
        WebDriverWait(browser, 10).until(expected_conditions.url_contains("/console/policies/diff"))
        assert [h.text for h in browser.find_elements(By.TAG_NAME, "h2")] == ["amount_cap.cedar"]
        added = [s.text for s in browser.find_elements(By.CSS_SELECTOR, "pre.diff .added")]
        assert added == ["+ // Reviewed by the payments team."], added
        assert browser.find_elements(By.CSS_SELECTOR, "pre.diff .removed") == []
        screenshot(browser, "policy-diff")

        browser.get(f"{server.url}/console/policies/{draft}")
        browser.find_element(By.XPATH, "//button[text()='Run the policy tests']").click()
        WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "tested-title")))
        assert "Passed:" in browser.find_element(By.CSS_SELECTOR, "#tested-title + p").text

        browser.find_element(By.XPATH, "//button[text()='Shadow it on live traffic']").click()
        WebDriverWait(browser, 10).until(expected_conditions.url_contains("done="))
        assert "shadow" in browser.find_element(By.TAG_NAME, "h1").text
        assert "Shadow report" in browser.page_source

        browser.find_element(By.XPATH, "//button[text()='Replay']").click()
        WebDriverWait(browser, 10).until(expected_conditions.url_contains("replay_from="))
        report = browser.find_element(By.XPATH, "//section[@aria-labelledby='replay-title']//p[@role='status']").text
        assert "0 would change" in report and "replayed" in report, report
        screenshot(browser, "policy-version")

        browser.find_element(By.XPATH, "//button[text()='Activate']").click()
        WebDriverWait(browser, 10).until(expected_conditions.url_contains("done="))
        assert "Active from the next decision on" in browser.page_source
        assert active_version(server, admin) == draft

        # The version it replaced is older: its page offers a rollback.
        browser.get(f"{server.url}/console/policies/{original}")
        browser.find_element(By.XPATH, "//button[text()='Roll back to this version']").click()
        WebDriverWait(browser, 10).until(expected_conditions.url_contains("done="))
        assert active_version(server, admin) == original
    finally:
        if active_version(server, admin) != original:
            server.api("POST", f"/v1/policies/{original}/activate", admin)


def test_an_auditor_reads_policies_but_cannot_act(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    reader = server.mint("ops", "admin,auditor")
    version = active_version(server, reader)
    browser.get(server.link("aud", "auditor"))
    browser.get(f"{server.url}/console/policies/{version}")
    assert "Texts" in browser.page_source
    assert browser.find_elements(By.XPATH, "//button[text()='Run the policy tests']") == []
    # The same form posted anyway, with the session's own CSRF token: the control policy refuses.
    cookie = browser.get_cookie("reins_console")["value"]
    page = httpx.get(f"{server.url}/console/policies", cookies={"reins_console": cookie}).text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    r = httpx.post(
        f"{server.url}/console/policies/{version}/test",
        cookies={"reins_console": cookie},
        data={"csrf": csrf},
    )
    assert r.status_code == 303 and "control+policy+does+not+permit" in r.headers["location"]
    r = httpx.get(f"{server.url}/console/policies?store=nope", cookies={"reins_console": cookie})
    assert r.status_code == 404 and "no such policy store" in r.text
    # Someone without a policy role gets a 403 page.
    browser.delete_all_cookies()
    browser.get(server.link("opal", "operator"))
    browser.get(f"{server.url}/console/policies")
    assert "Forbidden" in browser.find_element(By.TAG_NAME, "h1").text
