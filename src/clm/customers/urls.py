from django.urls import path

from clm.customers import views

app_name = "customers"
urlpatterns = [
    path("", views.contact_list, name="contact_list"),
]
