"""Navigation entries of the customers app: (section, label, url name, permission or None)."""

NAV: list[tuple[str, str, str, str | None]] = [
    ("Customers", "Contacts", "customers:contact_list", "customers.view_contact"),
    ("Customers", "Companies", "customers:company_list", "customers.view_company"),
    ("Customers", "Import", "customers:import_start", "customers.add_importjob"),
    ("Customers", "Duplicates", "customers:duplicates", "customers.view_contact"),
]
