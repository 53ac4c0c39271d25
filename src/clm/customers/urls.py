from django.urls import include, path

from clm.customers import views

app_name = "customers"
urlpatterns = [
    path("", views.contact_list, name="contact_list"),
    path("new/", views.contact_create, name="contact_create"),
    path("export/", views.contact_export, name="contact_export"),
    path("bulk/", views.contact_bulk, name="contact_bulk"),
    path("views/", views.saved_view_create, name="saved_view_create"),
    path("views/<int:pk>/delete/", views.saved_view_remove, name="saved_view_delete"),
    path("<int:pk>/", views.contact_detail, name="contact_detail"),
    path("<int:pk>/edit/", views.contact_edit, name="contact_edit"),
    path("<int:pk>/delete/", views.contact_delete, name="contact_delete"),
    path("<int:pk>/timeline/", views.contact_timeline_part, name="contact_timeline"),
    path("<int:pk>/notes/", views.contact_note_add, name="contact_note_add"),
    path("<int:pk>/consent/", views.contact_consent_add, name="contact_consent_add"),
    path("companies/", views.company_list, name="company_list"),
    path("companies/new/", views.company_create, name="company_create"),
    path("companies/suggest/", views.company_suggest, name="company_suggest"),
    path("companies/<int:pk>/", views.company_detail, name="company_detail"),
    path("companies/<int:pk>/edit/", views.company_edit, name="company_edit"),
    path("import/", include("clm.customers.urls_import")),
]
