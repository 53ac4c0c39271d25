from django.urls import path

from clm.analytics import views

app_name = "analytics"
urlpatterns = [
    path("clv/", views.clv_model, name="clv_model"),
    path("clv/refresh/", views.refresh, name="refresh"),
    path("clv/refresh/status/", views.refresh_status, name="refresh_status"),
]
