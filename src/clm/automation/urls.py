from django.urls import path

from clm.automation import views

app_name = "automation"
urlpatterns = [
    path("", views.workflow_list, name="workflow_list"),
    path("new/", views.workflow_edit, name="workflow_create"),
    path("playbooks/install/", views.playbooks_install_view, name="playbooks_install"),
    path("notifications/", views.notification_list, name="notifications"),
    path("<int:pk>/", views.workflow_detail, name="workflow_detail"),
    path("<int:pk>/edit/", views.workflow_edit, name="workflow_edit"),
    path("<int:pk>/activate/", views.workflow_toggle, {"action": "activate"},
         name="workflow_activate"),
    path("<int:pk>/pause/", views.workflow_toggle, {"action": "pause"}, name="workflow_pause"),
    path("<int:pk>/delete/", views.workflow_delete, name="workflow_delete"),
]
