"""Segments: count of a three-condition behavioural segment, live and from counters.

The segment: country in [DE, FR, GB] AND did order.completed at least 2 times in the last
365 days AND P(alive) >= 0.5. Target (issue #4): the count at 1M contacts in at most
100 ms p95 ("precomputed per-contact scores may be used").

Measured both ways the compiler can run the behaviour condition:
  live      EXISTS (… event WHERE contact = outer AND kind AND time … LIMIT 1 OFFSET 1) per
            candidate contact, on the (contact, kind, -occurred_at) index
  counters  contact id IN (SELECT contact_id FROM behaviour counters WHERE window AND
            count >= 2 AND country IN (…) AND p_alive >= 0.5): the AND group's country and
            P(alive) tests are folded into the counter read, whose rows carry copies of both
            made by the same refresh, so it is one covering-index range; the country is then
            checked on each surviving contact (no ContactScore join). The counters are what
            the 15-minute evaluation job refreshes (its cost is reported too)
  preview   what the segment builder's live count runs (clm.segments.queries
            .definition_preview): the newest 10 matches and the count, for a superuser

In `make bench` (run(ctx)) it uses the seeded database; contacts without a ContactScore get
synthetic P(alive) values inside a transaction that is rolled back, so the database is left
as it was. Standalone, on its own throwaway SQLite database:
    CLM_VAR_DIR=$(mktemp -d) python -m bench.bench_segments 50000     # contacts
"""

from __future__ import annotations

import sys
import time
from datetime import UTC

ORDER = 70
TARGET_MS = 100.0
DEFINITION = {"op": "and", "conditions": [
    {"type": "property", "field": "country", "op": "in", "value": ["DE", "FR", "GB"]},
    {"type": "event", "kind": "order.completed", "op": "did", "count": 2, "days": 365},
    {"type": "p_alive", "min": 0.5},
]}
COUNTRIES = ["US", "DE", "FR", "GB", "NL", "ES", "IT", "SE", "DK", "PL"]


class _Rollback(Exception):
    pass


def _timestamps(seconds_ago, now) -> list[str]:
    """UTC timestamps as the databases' text form, `seconds_ago` before `now`."""
    import numpy as np

    base = np.datetime64(now.replace(tzinfo=None), "us")
    stamps = base - seconds_ago.astype("timedelta64[s]")
    return np.char.replace(np.datetime_as_string(stamps, unit="us"), "T", " ").tolist()


def generate(contacts: int, seed: int = 42) -> None:
    """Contacts with countries, 10 events each (about 1.5 orders over three years), and
    scores with a uniform P(alive) for 60% of them. Bulk-written (clm.core.seeding)."""
    import numpy as np
    from django.utils import timezone

    from clm.analytics.models import ContactScore
    from clm.core.seeding import BulkWriter
    from clm.customers.models import Contact
    from clm.timeline.models import Event

    rng = np.random.default_rng(seed)
    now = timezone.now().astimezone(UTC)
    writer = BulkWriter()
    ids = np.arange(1, contacts + 1)
    country = rng.choice(COUNTRIES, size=contacts).tolist()
    created = _timestamps(np.zeros(contacts, dtype=np.int64), now)
    writer.write(Contact, ["id", "first_name", "last_name", "country", "source",
                           "created_at", "updated_at"],
                 ((int(i), "B", str(i), c, "bench", t, t)
                  for i, c, t in zip(ids, country, created, strict=True)))
    per = 10
    orders = np.minimum(rng.exponential(1.5, contacts).astype(np.int64), per)
    contact = np.repeat(ids, per)
    is_order = np.tile(np.arange(per), contacts) < np.repeat(orders, per)
    when = _timestamps(rng.integers(0, 3 * 365 * 86400, contacts * per), now)
    recorded = created[0]
    writer.write(Event, ["contact_id", "kind", "occurred_at", "recorded_at", "source"],
                 ((int(c), "order.completed" if o else "page.viewed", w, recorded, "bench")
                  for c, o, w in zip(contact, is_order, when, strict=True)))
    scored = ids[rng.random(contacts) < 0.6]
    today = timezone.localdate().isoformat()
    writer.write(ContactScore, ["contact_id", "as_of", "p_alive"],
                 ((int(i), today, float(p)) for i, p in zip(scored, rng.random(scored.size),
                                                            strict=True)))


def _fill_scores() -> int:
    """Give contacts without a score a synthetic P(alive) (the caller rolls this back)."""
    from django.utils import timezone

    from clm.analytics.models import ContactScore
    from clm.core.seeding import BulkWriter
    from clm.customers.models import Contact

    missing = list(Contact.objects.exclude(pk__in=ContactScore.objects.values("contact_id"))
                   .values_list("pk", flat=True))
    today = timezone.localdate().isoformat()
    return BulkWriter().write(ContactScore, ["contact_id", "as_of", "p_alive"],
                              ((i, today, (i * 7919 % 1000) / 1000.0) for i in missing))


def measure(n_live: int = 10, n_counters: int = 50) -> dict:
    """Timings of the count (live and from counters), the counter refresh and evaluation."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    from bench.common import timed
    from clm.customers.models import Contact
    from clm.segments import services
    from clm.segments.compiler import compile_definition
    from clm.segments.models import BehaviourCounter, BehaviourWindow, Segment
    from clm.segments.queries import definition_preview

    result: dict = {}

    def count(use_counters: bool) -> int:
        return Contact.objects.filter(
            compile_definition(DEFINITION, use_counters=use_counters)).count()

    t0 = time.perf_counter()
    result["live_count"] = count(False)
    first_live = time.perf_counter() - t0
    result["live"] = timed(lambda: count(False), n=max(1, n_live if first_live < 2 else 3),
                           warmup=1)
    t0 = time.perf_counter()
    services.behaviour_windows_refresh([("order.completed", 365)], prune=False)
    result["refresh_s"] = time.perf_counter() - t0
    result["counter_count"] = count(True)
    result["counters"] = timed(lambda: count(True), n=n_counters)
    # The same counters read as before the folding, for comparison in the same run: country
    # tested per contact, P(alive) joined from ContactScore per counter row.
    window = BehaviourWindow.objects.get(kind="order.completed", days=365)
    unfolded = (Q(country__in=["DE", "FR", "GB"])
                & Q(pk__in=BehaviourCounter.objects.filter(window=window, count__gte=2)
                    .values("contact_id"))
                & Q(score__p_alive__gte=0.5))
    result["unfolded_count"] = Contact.objects.filter(unfolded).count()
    result["unfolded"] = timed(lambda: Contact.objects.filter(unfolded).count(),
                               n=max(5, n_counters // 5))
    user = get_user_model().objects.create_superuser("bench-segments", "bench@example.com",
                                                     "x")
    result["preview_count"] = definition_preview(DEFINITION, user).count
    result["preview"] = timed(lambda: definition_preview(DEFINITION, user), n=n_counters // 2)
    segment = services.segment_create(data={"name": "bench segment", "definition": DEFINITION})
    t0 = time.perf_counter()
    services.segment_evaluate(segment=segment)
    result["baseline_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result["again"] = services.segment_evaluate(segment=segment)
    result["again_s"] = time.perf_counter() - t0
    result["segment"] = Segment.objects.get(pk=segment.pk).member_count
    return result


def report(r: dict, contacts: int, scores_filled: int) -> str:
    from bench.common import STATS_HEADER

    p95 = r["counters"].p95_ms
    verdict = "meets" if p95 <= TARGET_MS else "misses"
    lines = [
        f"Segment: country in [DE, FR, GB] AND order.completed ≥ 2 times in 365 days AND "
        f"P(alive) ≥ 0.5, over {contacts:,} contacts: {r['live_count']:,} members "
        f"(from counters: {r['counter_count']:,}; unfolded: {r['unfolded_count']:,}; "
        f"builder preview: {r['preview_count']:,}).",
        "",
        STATS_HEADER,
        r["live"].row("count, live (EXISTS … OFFSET on the event index)"),
        r["counters"].row("count, from behaviour counters (country and P(alive) tests folded "
                          "into the counter index range)"),
        r["unfolded"].row("count, from counters without folding (country per contact, "
                          "P(alive) joined per counter row: the plan before)"),
        r["preview"].row("builder live count (first 10 + count, superuser)"),
        "",
        f"From counters: p95 {p95:.1f} ms (target ≤ {TARGET_MS:.0f} ms at 1M contacts: "
        f"{verdict} at this size).",
        "",
        "| job step | seconds |", "|---|---:|",
        f"| refresh counters for (order.completed, 365 days) | {r['refresh_s']:.2f} |",
        f"| first evaluation of the segment (baseline membership) | {r['baseline_s']:.2f} |",
        f"| evaluation again, nothing changed (idempotent, {r['again'].entered} entered / "
        f"{r['again'].left} left) | {r['again_s']:.2f} |",
    ]
    if scores_filled:
        lines += ["", f"{scores_filled:,} contacts had no ContactScore; they were given a "
                      "synthetic P(alive) for this measurement (rolled back afterwards)."]
    return "\n".join(lines)


def run(ctx):
    from django.db import transaction

    from bench.common import Section
    from clm.customers.models import Contact

    contacts = Contact.objects.count()
    text = ""
    try:
        with transaction.atomic():
            filled = _fill_scores()
            text = report(measure(), contacts, filled)
            raise _Rollback
    except _Rollback:
        pass
    return [Section("Segments: behavioural segment count", text)]


def main(argv: list[str]) -> None:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clm.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    from clm.customers.models import Contact

    contacts = int(argv[0]) if argv else 50_000
    call_command("migrate", verbosity=0)
    if not Contact.objects.exists():
        t0 = time.perf_counter()
        generate(contacts)
        print(f"generated {contacts:,} contacts in {time.perf_counter() - t0:.1f} s", flush=True)
    print(report(measure(), Contact.objects.count(), 0))


if __name__ == "__main__":
    main(sys.argv[1:])
