"""Settings for the test suite: CLM's settings with fast hashing and inline tasks.

Tests that exercise the real worker switch the backend with `override_settings(TASKS=...)`.
"""

from clm.settings import *  # noqa: F403
from clm.settings import DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Tests open and close connections as they go (a kept one would outlive its test database).
DATABASES["default"]["CONN_MAX_AGE"] = 0
