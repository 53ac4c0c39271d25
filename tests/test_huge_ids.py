"""Ids beyond what the databases store are a 4xx, never a driver overflow (500)."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", [
    "/api/v1/analytics/contacts/99999999999999999999/score",
    "/api/v1/analytics/refresh/99999999999999999999",
    "/api/v1/lifecycle/contacts/99999999999999999999/history",
    "/api/v1/segments/99999999999999999999",
    "/api/v1/automation/workflows/99999999999999999999",
    "/api/v1/contacts/99999999999999999999",
    "/api/v1/imports/99999999999999999999",
])
def test_huge_ids_are_4xx_not_500(admin_api, path):
    assert admin_api.get(path).status_code in (404, 422), path
