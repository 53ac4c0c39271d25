from django.urls import path

from clm.engagement import views, views_public

app_name = "engagement"
urlpatterns = [
    path("templates/", views.template_list, name="template_list"),
    path("templates/new/", views.template_create, name="template_create"),
    path("templates/<int:pk>/edit/", views.template_edit, name="template_edit"),
    path("templates/<int:pk>/preview/", views.template_preview, name="template_preview"),
    path("senders/", views.sender_list, name="sender_list"),
    path("senders/new/", views.sender_edit, name="sender_create"),
    path("senders/<int:pk>/edit/", views.sender_edit, name="sender_edit"),
    path("subscriptions/", views.subscription_type_list, name="subscription_type_list"),
    path("subscriptions/new/", views.subscription_type_edit, name="subscription_type_create"),
    path("subscriptions/<int:pk>/edit/", views.subscription_type_edit,
         name="subscription_type_edit"),
    path("broadcasts/", views.broadcast_list, name="broadcast_list"),
    path("broadcasts/new/", views.broadcast_create, name="broadcast_create"),
    path("broadcasts/<int:pk>/", views.broadcast_detail, name="broadcast_detail"),
    path("broadcasts/<int:pk>/progress/", views.broadcast_progress, name="broadcast_progress"),
    path("broadcasts/<int:pk>/start/", views.broadcast_start, name="broadcast_start"),
    path("broadcasts/<int:pk>/cancel/", views.broadcast_cancel, name="broadcast_cancel"),
    path("outbox/", views.outbox_list, name="outbox_list"),
    # Public, signed links from emails (no login).
    path("u/<str:token>/", views_public.unsubscribe, name="unsubscribe"),
    path("p/<str:token>/", views_public.preferences, name="preferences"),
    path("o/<str:token>/", views_public.track_open, name="track_open"),
    path("c/<str:token>/", views_public.track_click, name="track_click"),
]
