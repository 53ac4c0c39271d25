"""The navigation, laid out along the customer life. Only pages that exist are linked.

Each entry: (section, label, url name, permission or None). An app adds its pages here.
"""

from __future__ import annotations

NAV: list[tuple[str, str, str, str | None]] = [
    ("Customers", "Contacts", "customers:contact_list", "customers.view_contact"),
]
