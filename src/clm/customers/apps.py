from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "clm.customers"
    label = "customers"
    verbose_name = "Customers"
