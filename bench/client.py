"""Small HTTP helpers for the benchmarks (stdlib only), and bench users with credentials."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    body: bytes

    def json(self):
        return json.loads(self.body)


def request(method: str, url: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None, timeout: float = 120) -> Response:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - our own server
            return Response(r.status, r.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read())


def bench_admin():
    """A superuser in the admin role, for the benchmarks only (created once)."""
    from django.contrib.auth import get_user_model

    from clm.accounts.services import roles_sync, user_set_role

    User = get_user_model()
    user = User.objects.filter(username="bench-admin").first()
    if user is None:
        roles_sync()
        user = User(username="bench-admin", is_staff=True, is_superuser=True)
        user.set_unusable_password()
        user.save()
        user_set_role(user=user, role="admin")
    return user


def bearer(user) -> dict[str, str]:
    from clm.accounts.services import api_token_create

    _, raw = api_token_create(user=user, name="bench", scope="read_write")
    return {"Authorization": f"Bearer {raw}"}


def session_cookie(user) -> dict[str, str]:
    """A logged-in session for `user`, as the Cookie header a browser would send."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}"}
