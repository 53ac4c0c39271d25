"""In a real browser: create a contact through the form, add a note, see it without a reload."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_contact_and_add_a_note(logged_in_page, live_server):
    page = logged_in_page
    page.goto(f"{live_server.url}/contacts/")
    expect(page.get_by_text("No contacts yet")).to_be_visible()
    page.get_by_role("button", name="New contact").click()

    page.fill("input[name=first_name]", "Grace")
    page.fill("input[name=last_name]", "Hopper")
    page.fill("input[name=email]", "not-an-email")
    page.get_by_role("button", name="Create contact").click()
    expect(page.locator(".field.has-error .field-error")).to_contain_text("not a valid email")

    page.fill("input[name=email]", "grace@example.com")
    page.fill("input[name=tags]", "navy, pioneer")
    page.get_by_role("button", name="Create contact").click()
    expect(page.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    expect(page.locator("#timeline-items")).to_contain_text("Created")

    # Mark the page: a full reload would lose this property.
    page.evaluate("window.__noReload = true")
    page.fill("textarea[name=body]", "Met at the conference, wants a demo.")
    page.get_by_role("button", name="Add note").click()
    first = page.locator("#timeline-items li.event").first
    expect(first).to_contain_text("Met at the conference, wants a demo.")
    expect(first).to_contain_text("Note")
    expect(page.locator("textarea[name=body]")).to_have_value("")
    assert page.evaluate("window.__noReload") is True

    page.goto(f"{live_server.url}/contacts/")
    expect(page.get_by_role("link", name="Grace Hopper")).to_be_visible()
