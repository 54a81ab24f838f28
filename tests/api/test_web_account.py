"""The account page in a browser: two factors set up with the password again, recovery codes shown once."""

from __future__ import annotations

import re

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.fixtures.mail import MailServer, text_of
from tests.fixtures.web import WebPortal, screenshot, sign_in
from tests.support import blocking

pytestmark = pytest.mark.browser

ANNA_EMAIL = "anna@example.org"


def test_an_owner_turns_two_factors_on_from_the_account_page(web: WebPortal, page: Page, mail: MailServer):
    anna = web.add_person("anna", "owner", email=ANNA_EMAIL)
    web.add_site("Grachtenhuis", owner="anna")
    sign_in(page, web, anna)
    page.get_by_role("link", name="anna").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_text(f"In force: {ANNA_EMAIL}")).to_be_visible()
    two_factors = page.locator("#two-factors")
    two_factors.get_by_label("Current password").fill("not my password")
    two_factors.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.get_by_role("alert")).to_have_text(
        "body field current_password: the current password is wrong"
    )
    two_factors = page.locator("#two-factors")
    two_factors.get_by_label("Current password").fill(anna.password)
    two_factors.get_by_role("button", name="Set up an authenticator app").click()
    setup = page.locator("#totp-setup")
    secret = setup.locator("code.secret").first.inner_text()
    setup.get_by_label("First code of the app").fill(pyotp.TOTP(secret).now())
    setup.get_by_label("Current password").fill(anna.password)
    setup.get_by_role("button", name="Turn two-factor authentication on").click()
    expect(page.get_by_role("status")).to_have_text(
        "Two-factor authentication is on; your other sessions were signed out."
    )
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    expect(page.get_by_text("On. 10 recovery codes left.")).to_be_visible()
    screenshot(page, "account")
    [notice] = blocking(mail.wait_for(ANNA_EMAIL))
    assert "Two-factor authentication was turned on" in str(notice["Subject"])
    assert secret not in text_of(notice)
    # The page shown again holds no code: they were shown once.
    page.goto(f"{web.base_url}/account")
    expect(page.locator("#recovery-codes")).to_have_count(0)
