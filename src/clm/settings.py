"""Django settings for CLM, read from the environment (12-factor).

Environment variables:
    CLM_ENV            "development" (default) or "production"
    DATABASE_URL       default: SQLite file var/clm.sqlite3 (WAL)
    SECRET_KEY         default: generated once into var/secret_key
    ALLOWED_HOSTS      comma-separated; default "127.0.0.1,localhost" in development
    CLM_BASE_URL       public base URL used in links (emails, exports)
    EMAIL_URL-style settings: EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD,
                       EMAIL_USE_TLS, DEFAULT_FROM_EMAIL, EMAIL_BACKEND
    CLM_VAR_DIR        where the embedded database, secret key and uploads live (default ./var)
    CLM_TASKS_IMMEDIATE run background tasks inline (tests); default off
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent
VAR_DIR = Path(os.environ.get("CLM_VAR_DIR", Path.cwd() / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

CLM_ENV = os.environ.get("CLM_ENV", "development")
PRODUCTION = CLM_ENV == "production"
DEBUG = env_bool("DEBUG", default=not PRODUCTION)


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver")
CLM_BASE_URL = os.environ.get("CLM_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", CLM_BASE_URL)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "django_tasks",
    "django_tasks_db",
    "clm.core",
    "clm.accounts",
    "clm.customers",
    "clm.timeline",
    "clm.lifecycle",
    "clm.analytics",
    "clm.segments",
    "clm.engagement",
    "clm.automation",
    "clm.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "clm.core.nul.RefuseNulMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "clm.core.idempotency.IdempotencyMiddleware",
]

ROOT_URLCONF = "clm.urls"
WSGI_APPLICATION = "clm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The web app's templates first: its registration/ pages replace the admin's.
        "DIRS": [BASE_DIR / "web" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "clm.web.context_processors.navigation",
            ],
        },
    },
]

_default_db = f"sqlite:///{VAR_DIR / 'clm.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL", _default_db))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web server read while the worker writes; IMMEDIATE avoids
        # "database is locked" upgrades from read to write inside a transaction.
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA cache_size=-262144; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; "
            # Checkpoint less often: a checkpoint after nearly every ingest batch tripled commit time.
            "PRAGMA wal_autocheckpoint=10000; "
            # Reports scan large indexes; memory-mapped reads halved the funnel's time.
            "PRAGMA mmap_size=2147483648;"
        ),
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["TEST"] = {"NAME": os.environ.get("CLM_TEST_SQLITE_NAME", "")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Connections kept between requests by the web server's long-lived threads (`clm serve`). On
# SQLite too: a new connection starts with an empty page cache and runs the PRAGMAs above.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "60"))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "web:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# `clm serve` (gunicorn) has no static view of its own: outside production WhiteNoise serves
# straight from the apps' static folders, so no collectstatic is needed to run the demo.
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_ROOT = VAR_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024

# Background work: Django's Tasks API (backport) with the database backend.
TASKS = {
    "default": {
        "BACKEND": (
            "django_tasks.backends.immediate.ImmediateBackend"
            if env_bool("CLM_TASKS_IMMEDIATE")
            else "django_tasks_db.DatabaseBackend"
        ),
        "QUEUES": ["default"],
    }
}

# Explicit consumers of committed timeline events (no signal chains): each dotted path is
# called with a list of event ids after the transaction that wrote them commits.
CLM_EVENT_CONSUMERS: list[str] = [
    "clm.lifecycle.consumers.on_events_committed",
    "clm.analytics.consumers.on_events_committed",
    "clm.engagement.consumers.on_events_committed",
    "clm.automation.consumers.on_events_committed",
]

# Email
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = VAR_DIR / "mail"
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "CLM <clm@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Marketing email limits per contact, quiet hours in the contact's time zone ("off" disables).
CLM_EMAIL_MAX_PER_DAY = int(os.environ.get("CLM_EMAIL_MAX_PER_DAY", "2"))
CLM_EMAIL_MAX_PER_WEEK = int(os.environ.get("CLM_EMAIL_MAX_PER_WEEK", "5"))
CLM_EMAIL_QUIET_HOURS = os.environ.get("CLM_EMAIL_QUIET_HOURS", "21-8")
CLM_EMAIL_CLAIM_LEASE_SECONDS = int(os.environ.get("CLM_EMAIL_CLAIM_LEASE_SECONDS", "900"))
CLM_EMAIL_MAX_ATTEMPTS = int(os.environ.get("CLM_EMAIL_MAX_ATTEMPTS", "6"))
CLM_EMAIL_RETRY_BASE_SECONDS = int(os.environ.get("CLM_EMAIL_RETRY_BASE_SECONDS", "60"))
CLM_EMAIL_UNSUBSCRIBE_MAILTO = os.environ.get("CLM_EMAIL_UNSUBSCRIBE_MAILTO", "")

# API
CLM_API_MAX_PAGE_SIZE = 200
CLM_API_DEFAULT_PAGE_SIZE = 50
CLM_INGEST_MAX_BATCH = 1000
CLM_IMPORT_INLINE_MAX_ROWS = int(os.environ.get("CLM_IMPORT_INLINE_MAX_ROWS", "500"))
CLM_DEFAULT_CURRENCY = os.environ.get("CLM_DEFAULT_CURRENCY", "USD")
# Customer intelligence: CLV horizon and discounting, expected-purchases window.
CLM_CLV_HORIZON_MONTHS = int(os.environ.get("CLM_CLV_HORIZON_MONTHS", "12"))
CLM_CLV_MONTHLY_DISCOUNT = float(os.environ.get("CLM_CLV_MONTHLY_DISCOUNT", "0.01"))
CLM_EXPECTED_PURCHASES_DAYS = int(os.environ.get("CLM_EXPECTED_PURCHASES_DAYS", "90"))
# How often the scheduler refits the models and rewrites every contact's scores (hours).
CLM_ANALYTICS_REFRESH_HOURS = float(os.environ.get("CLM_ANALYTICS_REFRESH_HOURS", "24"))
# Lifecycle: lead score that makes an MQL, days without purchase that make a churned customer.
CLM_MQL_SCORE_THRESHOLD = int(os.environ.get("CLM_MQL_SCORE_THRESHOLD", "50"))
CLM_CHURN_AFTER_DAYS = int(os.environ.get("CLM_CHURN_AFTER_DAYS", "365"))
CLM_LIFECYCLE_BULK_MAX = 500
CLM_DEFAULT_PHONE_REGION = os.environ.get("CLM_DEFAULT_PHONE_REGION", "US")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
