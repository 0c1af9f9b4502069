"""The console in a real browser: sign in with a one-time link, the fleet as it stands, sign-out
that ends the session on the server, and the refusals a console owes its users (a used link, an
API token as a link, a form without its CSRF token, a person without a console role)."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import Server, screenshot


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
