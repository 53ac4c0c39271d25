"""URLs of the import wizard and duplicate review (included at /contacts/import/ in the
"customers" namespace)."""

from django.urls import path

from clm.customers import views_import as views

urlpatterns = [
    path("", views.import_start, name="import_start"),
    path("<int:pk>/", views.import_detail, name="import_detail"),
    path("<int:pk>/mapping/", views.import_mapping, name="import_mapping"),
    path("<int:pk>/confirm/", views.import_confirm, name="import_confirm"),
    path("<int:pk>/status/", views.import_status, name="import_status"),
    path("<int:pk>/errors.csv", views.import_errors_csv, name="import_errors_csv"),
    path("duplicates/", views.duplicates, name="duplicates"),
    path("duplicates/merge/", views.duplicates_merge, name="duplicates_merge"),
]
