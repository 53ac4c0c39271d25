"""The published maximum-likelihood fits on CDNOW, reproduced through the product's own path:
CSV → `clm import_transactions` → `clm analytics_refresh --as-of 1997-09-30` → the API.

Fader, Hardie & Lee (2005): BG/NBD r = 0.243, alpha = 4.414, a = 0.793, b = 2.426,
LL = -9582.4 (weeks, 39-week calibration to 1997-09-30); Gamma-Gamma on the same calibration
repeat buyers p = 6.25, q = 3.74, gamma = 15.44. `lifetimes` gets the same on its copy.
"""

from __future__ import annotations

import math

import pytest
from django.core.management import call_command

from clm.analytics.models import ContactScore, Transaction
from clm.customers.models import Contact


def sig3(value: float) -> float:
    return float(f"{value:.3g}")


@pytest.mark.django_db
def test_cdnow_fit_reproduces_published_values(cdnow_csv, admin_api, capsys):
    call_command("import_transactions", str(cdnow_csv))
    assert Transaction.objects.count() == 6919
    assert Contact.objects.filter(source="import").count() == 2357

    call_command("analytics_refresh", "--as-of", "1997-09-30")
    response = admin_api.get("/api/v1/analytics/clv-model")
    assert response.status_code == 200, response.content
    body = response.json()

    assert body["as_of"] == "1997-09-30"
    assert body["customer_count"] == 2357
    bg = body["bgnbd"]
    assert bg["time_unit"] == "weeks"
    assert {k: sig3(bg[k]) for k in ("r", "alpha", "a", "b")} == {
        "r": 0.243, "alpha": 4.41, "a": 0.793, "b": 2.43}
    assert math.isclose(bg["log_likelihood"], -9582.4, abs_tol=0.05)
    gg = body["gamma_gamma"]
    assert {k: sig3(gg[k]) for k in ("p", "q", "gamma")} == {"p": 6.25, "q": 3.74, "gamma": 15.4}
    assert gg["customers"] == 946  # repeat buyers in the calibration period

    diag = body["diagnostics"]
    assert diag["frequency"] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert diag["actual"][:2] == [1411, 439]
    assert math.isclose(sum(diag["expected"]), 2357, rel_tol=1e-9)
    assert abs(diag["expected"][0] - 1411) < 10

    # Every customer is scored; later purchases (after the calibration) are ignored.
    assert ContactScore.objects.filter(p_alive__isnull=False).count() == 2357
    one_timer = ContactScore.objects.filter(frequency=0).first()
    assert one_timer.p_alive == 1.0 and one_timer.churn_risk == 0.0
    assert ContactScore.objects.filter(last_purchase_on__gt="1997-09-30").count() == 0


@pytest.mark.django_db
def test_reimport_is_idempotent(cdnow_csv):
    call_command("import_transactions", str(cdnow_csv))
    call_command("import_transactions", str(cdnow_csv))
    assert Transaction.objects.count() == 6919
    assert Contact.objects.count() == 2357
