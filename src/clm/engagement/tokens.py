"""Signed tokens for the public links in emails (django.core.signing, one salt per use).

Unsubscribe and preference links do not expire (RFC 8058 expects long-lived links); open
and click links carry the message id, and the click link carries its target URL, so the
redirect goes only where the signature says (no open redirect).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse

SALT_UNSUBSCRIBE = "clm.engagement.unsubscribe"
SALT_PREFERENCES = "clm.engagement.preferences"
SALT_OPEN = "clm.engagement.open"
SALT_CLICK = "clm.engagement.click"


def _sign(payload: dict[str, Any], salt: str) -> str:
    return signing.Signer(salt=salt).sign_object(payload, compress=True)


def _unsign(token: str, salt: str) -> dict[str, Any] | None:
    """The payload, or None for anything tampered, foreign (another salt) or malformed."""
    try:
        payload = signing.Signer(salt=salt).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def absolute(path: str) -> str:
    return f"{settings.CLM_BASE_URL}{path}"


@lru_cache(maxsize=8)
def _path_pattern(url_name: str) -> tuple[str, str]:
    # reverse() once per link kind; emails are built by the thousand.
    prefix, _, suffix = reverse(url_name, args=["TOKEN"]).partition("TOKEN")
    return prefix, suffix


def _link(url_name: str, token: str) -> str:
    prefix, suffix = _path_pattern(url_name)
    return f"{settings.CLM_BASE_URL}{prefix}{token}{suffix}"


def unsubscribe_token(*, contact_id: int, type_key: str, message_id: int | None = None) -> str:
    payload: dict[str, Any] = {"c": contact_id, "t": type_key}
    if message_id:
        payload["m"] = message_id
    return _sign(payload, SALT_UNSUBSCRIBE)


def unsubscribe_read(token: str) -> tuple[int, str, int | None] | None:
    """(contact id, subscription type key, message id or None), or None if not valid."""
    p = _unsign(token, SALT_UNSUBSCRIBE)
    if not p or not isinstance(p.get("c"), int) or not isinstance(p.get("t"), str):
        return None
    message_id = p.get("m")
    return p["c"], p["t"], message_id if isinstance(message_id, int) else None


def preferences_token(*, contact_id: int) -> str:
    return _sign({"c": contact_id}, SALT_PREFERENCES)


def preferences_read(token: str) -> int | None:
    p = _unsign(token, SALT_PREFERENCES)
    return p["c"] if p and isinstance(p.get("c"), int) else None


def open_token(*, message_id: int) -> str:
    return _sign({"m": message_id}, SALT_OPEN)


def open_read(token: str) -> int | None:
    p = _unsign(token, SALT_OPEN)
    return p["m"] if p and isinstance(p.get("m"), int) else None


def click_token(*, message_id: int, url: str) -> str:
    return _sign({"m": message_id, "u": url}, SALT_CLICK)


def click_read(token: str) -> tuple[int, str] | None:
    p = _unsign(token, SALT_CLICK)
    if not p or not isinstance(p.get("m"), int) or not isinstance(p.get("u"), str):
        return None
    if not p["u"].lower().startswith(("http://", "https://")):
        return None
    return p["m"], p["u"]


def unsubscribe_url(*, contact_id: int, type_key: str, message_id: int | None = None) -> str:
    token = unsubscribe_token(contact_id=contact_id, type_key=type_key, message_id=message_id)
    return _link("engagement:unsubscribe", token)


def preferences_url(*, contact_id: int) -> str:
    return _link("engagement:preferences", preferences_token(contact_id=contact_id))


def open_url(*, message_id: int) -> str:
    return _link("engagement:track_open", open_token(message_id=message_id))


def click_url(*, message_id: int, url: str) -> str:
    return _link("engagement:track_click", click_token(message_id=message_id, url=url))
