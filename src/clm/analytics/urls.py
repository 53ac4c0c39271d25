from django.urls import path

from clm.analytics import views

app_name = "analytics"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("csv/<slug:chart>/", views.dashboard_csv, name="dashboard_csv"),
    path("clv/", views.clv_model, name="clv_model"),
    path("clv/refresh/", views.refresh, name="refresh"),
    path("clv/refresh/status/", views.refresh_status, name="refresh_status"),
]
