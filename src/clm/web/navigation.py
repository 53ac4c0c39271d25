"""The navigation, laid out along the customer life. Only pages that exist are linked.

Each app lists its pages in its own `nav.py` (NAV: (section, label, url name, permission));
sections appear in the order of the customer life below.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

SECTIONS = ["Reach", "Customers", "Lifecycle", "Engagement", "Insight", "Settings"]
NAV_MODULES = ["clm.customers.nav", "clm.lifecycle.nav", "clm.analytics.nav", "clm.segments.nav",
               "clm.engagement.nav", "clm.automation.nav", "clm.web.nav"]


@cache
def nav_entries() -> list[tuple[str, str, str, str | None]]:
    entries: list[tuple[str, str, str, str | None]] = []
    for module_path in NAV_MODULES:
        entries.extend(getattr(import_module(module_path), "NAV", []))
    order = {name: i for i, name in enumerate(SECTIONS)}
    return sorted(entries, key=lambda e: order.get(e[0], len(SECTIONS)))
