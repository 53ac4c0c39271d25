"""WSGI entry point: `gunicorn clm.wsgi` or any WSGI server."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clm.settings")
application = get_wsgi_application()
