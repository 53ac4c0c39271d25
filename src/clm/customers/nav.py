"""Navigation entries of the customers app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = [
    ("Customers", "Contacts", "customers:contact_list", "customers.view_contact"),
]
