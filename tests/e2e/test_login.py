import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


def test_log_in_and_out(page, live_server, admin_user):
    page.goto(f"{live_server.url}/contacts/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/contacts/")
    page.fill("input[name=username]", admin_user.username)
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    expect(page.locator(".errorlist")).to_be_visible()
    page.fill("input[name=username]", admin_user.username)
    page.fill("input[name=password]", "pw-Secret-123")
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Contacts")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to CLM")).to_be_visible()
