"""Every page, as a phone and a laptop show it: nothing wider than the screen (tables scroll inside
themselves), and every form field labelled, so that a screen reader names it. Screenshots of each
page at phone width go to `target/console-screenshots/phone-*.png`."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from .conftest import Server, screenshot

# Field ids without a <label for>, and not inside a <label>, and with no aria-label: unlabelled.
UNLABELLED = """
return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.id && document.querySelector(`label[for="${el.id}"]`))
             && !el.closest('label') && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML);
"""


def pages(server: Server) -> list[tuple[str, str]]:
    admin = server.tokens["admin"]
    versions = server.api("GET", "/v1/policies", admin).json()["versions"]
    agent = server.mint("refund-bot")
    decision = server.api(
        "POST", "/v1/decisions", agent, {"action": "invoke", "resource": {"type": "Tool", "id": "crm.note"}}
    ).json()
    return [
        ("fleet", "/console"),
        ("decisions", "/console/decisions"),
        ("decision", f"/console/decisions/{decision['decision_id']}"),
        ("approvals", "/console/approvals"),
        ("killswitch", "/console/killswitch"),
        ("policies", "/console/policies"),
        ("policy", f"/console/policies/{versions[-1]['version']}"),
        ("agent", "/console/agents/refund-bot"),
        ("ledger", "/console/ledger"),
        ("entry", "/console/ledger/entries/0"),
    ]


@pytest.mark.parametrize("width,height,name", [(390, 844, "phone"), (1280, 900, "laptop")])
def test_every_page_fits_the_screen_and_labels_its_fields(server: Server, browser, width: int, height: int, name: str) -> None:  # type: ignore[no-untyped-def]
    browser.get(
        server.link("nora", "admin,auditor,compliance_officer,operator,approver,reviewer,policy_admin")
    )
    browser.set_window_size(width, height)
    for page, path in pages(server):
        browser.get(server.url + path)
        assert browser.find_element(By.TAG_NAME, "h1").text, f"{page}: no heading"
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{page} is {overflow}px wider than a {width}px screen"
        assert browser.execute_script(UNLABELLED) == [], f"{page} has unlabelled fields"
        if name == "phone":
            screenshot(browser, f"phone-{page}")
