"""Fixtures of the analytics tests: the CDNOW 1/10 sample as a transactions CSV."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest


def lifetimes_dataset(name: str) -> Path:
    """A file of the `lifetimes` package's datasets folder (read by path, never copied)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the test-only dependency `lifetimes` (ships the CDNOW data) is missing")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / name


@pytest.fixture
def cdnow_csv(tmp_path) -> Path:
    """CDNOW_sample.txt (2,357 customers, 1997-01-01..1998-06-30) as the product's CSV format."""
    source = lifetimes_dataset("CDNOW_sample.txt")
    target = tmp_path / "cdnow.csv"
    with source.open() as src, target.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "date", "amount", "currency", "order_reference"])
        for line_no, line in enumerate(src, start=1):
            parts = line.split()
            if len(parts) != 5:
                continue
            customer, _new_id, day, _cds, dollars = parts
            writer.writerow([customer, f"{day[:4]}-{day[4:6]}-{day[6:]}", dollars, "USD",
                             f"cdnow-{line_no}"])
    return target


@pytest.fixture(autouse=True)
def _fresh_report_cache():
    """Reports are cached per model run id, which repeats between tests: start empty."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
