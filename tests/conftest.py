"""Shared fixtures: users in each role, API clients with tokens."""

from __future__ import annotations

import pytest
from django.test import Client

from clm.accounts.services import api_token_create, user_set_role
from tests.factories import UserFactory


@pytest.fixture
def make_user(db):
    def make(role: str = "sales", *, username: str | None = None, team: str | None = None,
             superuser: bool = False):
        user = UserFactory(username=username) if username else UserFactory()
        if superuser:
            user.is_superuser = True
            user.is_staff = True
            user.save()
        user_set_role(user=user, role=role, team=team)
        return user

    return make


@pytest.fixture
def admin_user(make_user):
    return make_user("admin", username="boss", superuser=True)


@pytest.fixture
def sales_user(make_user):
    return make_user("sales", username="sally", team="east")


@pytest.fixture
def make_api_client(db):
    """An API client authenticated with a fresh token of the given scope."""

    def make(user, scope: str = "read_write") -> Client:
        _, raw = api_token_create(user=user, name="test", scope=scope)
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    return make


@pytest.fixture
def admin_api(admin_user, make_api_client) -> Client:
    return make_api_client(admin_user)


@pytest.fixture
def admin_client_logged_in(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def reference_data(transactional_db):
    """Transactional tests flush the database, seeded roles, stages and rules included (and
    pytest-django runs them last, after one another): a transactional test that needs them
    re-seeds them."""
    from importlib import import_module

    from django.apps import apps

    from clm.accounts.services import roles_sync

    roles_sync()
    for name in ("0002_seed_stages_rules", "0003_rule_created_by_user",
                 "0004_rules_imported_stage"):
        import_module(f"clm.lifecycle.migrations.{name}").seed(apps, None)
