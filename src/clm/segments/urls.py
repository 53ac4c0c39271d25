from django.urls import path

from clm.segments import views

app_name = "segments"
urlpatterns = [
    path("", views.segment_list, name="segment_list"),
    path("new/", views.segment_create, name="segment_create"),
    path("count/", views.segment_count, name="segment_count"),
    path("<int:pk>/", views.segment_detail, name="segment_detail"),
    path("<int:pk>/edit/", views.segment_edit, name="segment_edit"),
    path("<int:pk>/export.csv", views.segment_export, name="segment_export"),
    path("<int:pk>/snapshot/", views.segment_snapshot, name="segment_snapshot"),
    path("<int:pk>/delete/", views.segment_delete, name="segment_delete"),
    path("<int:pk>/members/", views.segment_members, name="segment_members"),
]
