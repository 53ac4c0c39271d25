import pytest

from clm.customers.queries import contacts_visible
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def test_scopes_own_team_all(make_user):
    sally = make_user("sales", username="sally", team="east")
    sam = make_user("sales", username="sam", team="east")
    manager = make_user("manager", username="meg", team="east")
    west = make_user("manager", username="will", team="west")
    marketer = make_user("marketing", username="mark")
    mine = ContactFactory(owner=sally)
    teammate = ContactFactory(owner=sam)
    assert list(contacts_visible(sally)) == [mine]
    assert set(contacts_visible(manager)) == {mine, teammate}
    assert list(contacts_visible(west)) == []
    assert set(contacts_visible(marketer)) == {mine, teammate}
