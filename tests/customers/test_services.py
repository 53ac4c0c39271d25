import pytest

from clm.core.errors import Conflict, ValidationFailed
from clm.customers import services
from clm.customers.models import FieldChange
from clm.customers.queries import consent_current
from clm.timeline.models import Event

pytestmark = pytest.mark.django_db


def test_contact_create_normalises_and_records_event(sales_user):
    contact = services.contact_create(
        data={"first_name": "Ada", "last_name": "Lovelace", "email": "  Ada@Example.COM ",
              "phone": "020 7946 0958", "country": "gb"},
        tags=["VIP", "vip", "newsletter"], actor=sales_user)
    assert contact.email == "ada@example.com"
    assert contact.phone == "+442079460958"
    assert contact.country == "GB"
    assert contact.owner == sales_user
    assert sorted(contact.tags.values_list("name", flat=True)) == ["newsletter", "vip"]
    assert list(Event.objects.filter(contact=contact).values_list("kind", flat=True)) == [
        "contact.created"]


def test_contact_create_refuses_bad_email_and_duplicate():
    with pytest.raises(ValidationFailed) as err:
        services.contact_create(data={"email": "not-an-email"})
    assert err.value.field == "email"
    services.contact_create(data={"email": "a@example.com"})
    with pytest.raises(Conflict) as dup:
        services.contact_create(data={"email": "A@example.com"})
    assert dup.value.field == "email"


def test_contact_update_audits_each_changed_field(sales_user):
    contact = services.contact_create(data={"first_name": "Ada", "email": "a@example.com"})
    _, changes = services.contact_update(contact=contact, data={"first_name": "Augusta",
                                                                "email": "a@example.com"},
                                         actor=sales_user)
    assert set(changes) == {"first_name"}
    change = FieldChange.objects.get(object_id=contact.pk, field="first_name")
    assert (change.old_value, change.new_value, change.actor) == ("Ada", "Augusta", sales_user)
    event = Event.objects.get(contact=contact, kind="contact.updated")
    assert event.properties["changes"] == {"first_name": ["Ada", "Augusta"]}
    # no change, no write
    _, none = services.contact_update(contact=contact, data={"first_name": "Augusta"})
    assert none == {}
    assert Event.objects.filter(contact=contact, kind="contact.updated").count() == 1


def test_consent_is_appended_never_overwritten():
    contact = services.contact_create(data={"email": "c@example.com"})
    services.consent_record(contact=contact, purpose="marketing_email", granted=True,
                            source="web", policy_version="v1")
    services.consent_record(contact=contact, purpose="marketing_email", granted=False,
                            source="unsubscribe")
    assert contact.consents.count() == 2
    assert consent_current(contact)["marketing_email"].granted is False


def test_custom_properties_are_validated():
    services.property_definition_create(object_type="contact", key="plan", label="Plan",
                                        type="choice", choices=["free", "pro"])
    services.property_definition_create(object_type="contact", key="seats", label="Seats",
                                        type="number")
    contact = services.contact_create(data={"email": "p@example.com"},
                                      properties={"plan": "pro", "seats": "12"})
    assert contact.properties == {"plan": "pro", "seats": 12}
    with pytest.raises(ValidationFailed) as err:
        services.contact_update(contact=contact, properties={"plan": "gold"})
    assert err.value.field == "properties.plan"
    with pytest.raises(ValidationFailed) as err:
        services.contact_update(contact=contact, properties={"nope": 1})
    assert err.value.code == "unknown_property"


def test_upsert_is_idempotent():
    contact, outcome = services.contact_upsert(data={"email": "u@example.com", "first_name": "U"},
                                               tags=["a"])
    assert outcome == "created"
    again, outcome = services.contact_upsert(data={"email": "U@Example.com", "first_name": "U"},
                                             tags=["a"])
    assert (again.pk, outcome) == (contact.pk, "unchanged")
    _, outcome = services.contact_upsert(data={"email": "u@example.com", "first_name": "V"})
    assert outcome == "updated"
    assert Event.objects.filter(contact=contact).count() == 2


def test_company_change_reaches_its_peoples_timelines(admin_user):
    from tests.factories import CompanyFactory, ContactFactory

    company = CompanyFactory(name="Acme")
    people = ContactFactory.create_batch(3, company=company)
    ContactFactory()  # elsewhere
    services.company_update(company=company, data={"name": "Acme Ltd"}, actor=admin_user)
    events = Event.objects.filter(kind="company.updated")
    assert sorted(events.values_list("contact_id", flat=True)) == sorted(c.pk for c in people)
    assert events.first().properties["changes"] == {"name": ["Acme", "Acme Ltd"]}
