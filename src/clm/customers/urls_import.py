"""URLs of the import wizard and duplicate review (included under /contacts/)."""

urlpatterns: list = []
