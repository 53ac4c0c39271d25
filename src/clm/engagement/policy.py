"""Whether and when a message may go out: consent, suppression, frequency caps, quiet hours.

Checked at send time (not when queued), in bulk for a batch of claimed messages.

- Consent: a marketing subscription type needs the contact's latest consent for its key to
  be granted; a non-marketing type goes out unless the latest consent withdrew it;
  transactional messages (no type) ignore consent.
- Caps (marketing only): at most CLM_EMAIL_MAX_PER_DAY in any rolling 24 hours and
  CLM_EMAIL_MAX_PER_WEEK in any rolling 7 days; a message over a cap is held until the
  oldest counted message leaves the window.
- Quiet hours (marketing only): CLM_EMAIL_QUIET_HOURS "21-8" in the contact's time zone
  (settings.TIME_ZONE if none or unknown); a message is held until the quiet hours end.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings

from clm.customers.models import ConsentRecord

DAY = timedelta(days=1)
WEEK = timedelta(days=7)


def _setting(name: str, default: str) -> str:
    """A Django setting, else the environment variable of the same name, else the default."""
    value = getattr(settings, name, None)
    return str(value) if value is not None else os.environ.get(name, default)


def max_per_day() -> int:
    return int(_setting("CLM_EMAIL_MAX_PER_DAY", "2"))


def max_per_week() -> int:
    return int(_setting("CLM_EMAIL_MAX_PER_WEEK", "5"))


def quiet_hours() -> tuple[int, int] | None:
    """(start hour, end hour) or None when disabled ("", "off", equal hours)."""
    raw = _setting("CLM_EMAIL_QUIET_HOURS", "21-8").strip().lower()
    if not raw or raw in {"off", "none"}:
        return None
    try:
        start, end = (int(p) for p in raw.split("-", 1))
    except ValueError:
        return None
    if start == end or not (0 <= start <= 23 and 0 <= end <= 23):
        return None
    return start, end


def contact_zone(tz_name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(tz_name) if tz_name else ZoneInfo(settings.TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(settings.TIME_ZONE)


def _in_quiet(hour: int, start: int, end: int) -> bool:
    return (hour >= start or hour < end) if start > end else (start <= hour < end)


def quiet_until(at: datetime, tz_name: str | None) -> datetime | None:
    """The end of the quiet hours `at` falls in (UTC-aware), or None if `at` is not quiet."""
    window = quiet_hours()
    if window is None:
        return None
    start, end = window
    local = at.astimezone(contact_zone(tz_name))
    if not _in_quiet(local.hour, start, end):
        return None
    day = local.date() if local.hour < end else local.date() + timedelta(days=1)
    naive_end = datetime(day.year, day.month, day.day, end)  # noqa: DTZ001 - tz set below
    return naive_end.replace(tzinfo=local.tzinfo).astimezone(ZoneInfo("UTC"))


def cap_until(sent_times: list[datetime], now: datetime) -> datetime | None:
    """When one more marketing email is allowed given recent sends, or None if allowed now."""
    recent = sorted((t for t in sent_times if t > now - WEEK), reverse=True)
    waits: list[datetime] = []
    day_limit, week_limit = max_per_day(), max_per_week()
    in_day = [t for t in recent if t > now - DAY]
    if len(in_day) >= day_limit:
        waits.append(in_day[day_limit - 1] + DAY)
    if len(recent) >= week_limit:
        waits.append(recent[week_limit - 1] + WEEK)
    return max(waits) if waits else None


def consent_states(contact_ids: set[int], purposes: set[str]) -> dict[tuple[int, str], bool]:
    """The latest consent per (contact, purpose) among the given ones (one query)."""
    states: dict[tuple[int, str], bool] = {}
    if not contact_ids or not purposes:
        return states
    rows = (ConsentRecord.objects.filter(contact_id__in=contact_ids, purpose__in=purposes)
            .order_by("contact_id", "purpose", "-occurred_at", "-pk")
            .values_list("contact_id", "purpose", "granted"))
    for contact_id, purpose, granted in rows:
        states.setdefault((contact_id, purpose), granted)
    return states


def consent_allows(*, is_marketing: bool, type_key: str | None,
                   state: bool | None) -> bool:
    """Marketing: only with a current opt-in. Non-marketing type: unless opted out."""
    if not type_key:
        return True
    if is_marketing:
        return state is True
    return state is not False


def recent_marketing_sends(contact_ids: set[int], now: datetime) -> dict[int, list[datetime]]:
    """Sent times of marketing messages in the last 7 days, per contact (one query)."""
    from clm.engagement.models import OutboundMessage

    sends: dict[int, list[datetime]] = defaultdict(list)
    if not contact_ids:
        return sends
    rows = OutboundMessage.objects.filter(
        contact_id__in=contact_ids, is_marketing=True, status=OutboundMessage.Status.SENT,
        sent_at__gt=now - WEEK).values_list("contact_id", "sent_at")
    for contact_id, sent_at in rows:
        sends[contact_id].append(sent_at)
    return sends


def hold_until(*, sent_times: list[datetime], tz_name: str | None,
               now: datetime) -> datetime | None:
    """When a marketing message to this contact may go, or None if it may go now."""
    at = cap_until(sent_times, now) or now
    quiet_end = quiet_until(at, tz_name)
    if quiet_end is not None:
        at = quiet_end
    return at if at > now else None
