from django.urls import path

from clm.lifecycle import views, views_reports

app_name = "lifecycle"
urlpatterns = [
    path("stages/", views.stage_list, name="stage_list"),
    path("stages/<slug:key>/", views.stage_edit, name="stage_edit"),
    path("rules/", views.rule_list, name="rule_list"),
    path("rules/new/", views.rule_edit, name="rule_create"),
    path("rules/<int:rule_id>/", views.rule_edit, name="rule_edit"),
    # The contact page includes this fragment (htmx GET; POST moves the contact).
    path("contacts/<int:contact_id>/stage/", views.contact_stage, name="contact_stage"),
    # The contact page loads the journey ribbon with htmx (GET only).
    path("contacts/<int:contact_id>/journey/", views_reports.contact_journey,
         name="contact_journey"),
    path("reports/funnel/", views_reports.report_funnel, name="report_funnel"),
    path("reports/flows/", views_reports.report_flows, name="report_flows"),
    path("reports/velocity/", views_reports.report_velocity, name="report_velocity"),
    path("reports/stages/", views_reports.report_stages, name="report_stages"),
]
