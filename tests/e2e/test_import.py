"""Browser: import a CSV with bad rows through the wizard and read the report."""

import pytest
from playwright.sync_api import expect

from clm.customers.models import Contact

pytestmark = pytest.mark.django_db(transaction=True)

CSV = ("First Name,Last Name,Email,Phone Number\n"
       "Ada,Lovelace,ada@example.com,\n"
       "Bad,Email,not-an-email,\n"
       "Alan,Turing,alan@example.com,\n"
       "Bad,Phone,bad.phone@example.com,123\n"
       "Grace,Hopper,grace@example.com,+1 415 555 0100\n")


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def test_import_wizard_reports_bad_rows(logged_in_page, live_server):
    page = logged_in_page
    page.goto(f"{live_server.url}/contacts/import/")
    page.set_input_files("input[name=file]", files=[{
        "name": "people.csv", "mimeType": "text/csv", "buffer": CSV.encode()}])
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.get_by_role("heading", name="Map the columns")).to_be_visible()
    expect(page.get_by_label("Field for column Email")).to_have_value("email")
    expect(page.get_by_text("ada@example.com")).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Start the import?")).to_be_visible()
    page.get_by_role("button", name="Start import").click()
    expect(page.locator("[data-count=created]")).to_have_text("3")
    errors = page.locator("#import-errors tbody tr")
    expect(errors).to_have_count(2)
    expect(errors.nth(0).locator("td").nth(0)).to_have_text("3")
    expect(errors.nth(0).locator("td").nth(1)).to_have_text("email")
    expect(errors.nth(1).locator("td").nth(0)).to_have_text("5")
    expect(errors.nth(1).locator("td").nth(1)).to_have_text("phone")
    expect(page.get_by_role("button", name="Download errors CSV")).to_be_visible()
    assert sorted(Contact.objects.values_list("email", flat=True)) == [
        "ada@example.com", "alan@example.com", "grace@example.com"]
