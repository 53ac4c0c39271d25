from django.urls import include, path

from clm.customers import views

app_name = "customers"
urlpatterns = [
    path("", views.contact_list, name="contact_list"),
    path("import/", include("clm.customers.urls_import")),
]
