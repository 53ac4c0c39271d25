"""Lifecycle reports (funnel, flows, velocity, stages over time) on a synthetic stage history.

Target (issue #3): funnel and flow reports at 1M contacts in at most 1 s.

The history is generated directly as StageChange rows (not through the engine): most contacts
stay subscriber or lead, fewer go deeper, some customers churn and some of those are won back
into a second life. In `make bench` the rows are written for the seeded contacts inside a
transaction that is rolled back afterwards, so the engine's own history is left as it was.

Standalone (own throwaway SQLite database):
    CLM_VAR_DIR=$(mktemp -d) python -m bench.bench_lifecycle_reports 100000   # contacts
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime, timedelta

ORDER = 70  # after bench_lifecycle (its rebuild writes history we then set aside)
TARGET_S = 1.0
YEARS = 3
SOURCES = ["web", "ads", "referral", "event", "import", "api", ""]

# stage -> [(next stage, probability)], and the mean days spent before moving on.
NEXT: dict[str, list[tuple[str, float]]] = {
    "subscriber": [("lead", 0.35), ("disqualified", 0.03)],
    "lead": [("mql", 0.35), ("opportunity", 0.02), ("disqualified", 0.08)],
    "mql": [("sql", 0.5), ("disqualified", 0.1)],
    "sql": [("opportunity", 0.6), ("disqualified", 0.1)],
    "opportunity": [("customer", 0.45), ("disqualified", 0.2)],
    "customer": [("promoter", 0.2), ("churned", 0.3)],
    "promoter": [("churned", 0.15)],
    "churned": [("customer", 0.2)],
    "disqualified": [("lead", 0.03)],
}
MEAN_DAYS = {"subscriber": 40, "lead": 20, "mql": 10, "sql": 12, "opportunity": 25,
             "customer": 200, "promoter": 250, "churned": 120, "disqualified": 200}


def journeys(rnd: random.Random, now: datetime, start: datetime):
    """Yield one contact's moves: (from, to, at, exited_at or None, life)."""
    span = (now - start).total_seconds()
    at = start + timedelta(seconds=rnd.random() * span)
    stage = "subscriber" if rnd.random() < 0.45 else "lead"
    prev, life, moves = "", 1, []
    while True:
        moves.append([prev, stage, at, None, life])
        roll, nxt = rnd.random(), None
        for target, p in NEXT[stage]:
            if roll < p:
                nxt = target
                break
            roll -= p
        if nxt is None:
            return moves
        # Whole hours, so velocity (reported to the hour) sees exact values.
        hours = max(1, round(rnd.expovariate(1 / (MEAN_DAYS[stage] * 24))))
        then = at + timedelta(hours=hours)
        if then >= now:
            return moves
        moves[-1][3] = then
        if stage == "churned" and nxt == "customer":
            life += 1
        prev, stage, at = stage, nxt, then


def generate_history(contact_ids: list[int], *, seed: int = 42, now: datetime | None = None) -> int:
    """Insert synthetic StageChange rows for the given contacts; return the number of rows."""
    from django.db import connection

    from clm.lifecycle.models import StageChange

    rnd = random.Random(seed)
    now = now or datetime.now(UTC)
    start = now - timedelta(days=365 * YEARS)
    adapt = connection.ops.adapt_datetimefield_value
    table = StageChange._meta.db_table
    sql = (f"INSERT INTO {table} (contact_id, seq, from_stage, to_stage, at, exited_at, "
           "actor_type, reason, life) VALUES (%s, %s, %s, %s, %s, %s, 'rule', '', %s)")
    rows, total = [], 0
    with connection.cursor() as cursor:
        for cid in contact_ids:
            for seq, (frm, to, at, exited, life) in enumerate(journeys(rnd, now, start), 1):
                rows.append((cid, seq, frm, to, adapt(at), adapt(exited) if exited else None,
                             life))
            if len(rows) >= 50_000:
                cursor.executemany(sql, rows)
                total += len(rows)
                rows = []
        if rows:
            cursor.executemany(sql, rows)
            total += len(rows)
    return total


# Covering indexes proposed for StageChange (not in the models yet): with them the funnel's
# per-entry probe and its outer scan never touch the table. (to_stage, at, …) would replace
# the existing stagechange_stage_at, of which it is an extension.
PROPOSED_INDEXES = {
    "stagechange_report_stage": "(to_stage, at, contact_id, seq, life, exited_at)",
    "stagechange_report_contact": "(contact_id, seq, life, to_stage, at)",
}


MMAP_BYTES = 2 << 30  # proposed for the SQLite settings too: PRAGMA mmap_size


def create_proposed_indexes() -> float:
    """Build the proposed indexes and map the database file into memory (this connection)."""
    from django.db import connection

    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        for name, cols in PROPOSED_INDEXES.items():
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON lifecycle_stagechange {cols}")
    return time.perf_counter() - t0


def drop_proposed_indexes() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA mmap_size=0")
        for name in PROPOSED_INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


def measure(*, repeat: int | None = None) -> tuple[str, dict[str, float]]:
    """Time each report (median of `repeat` runs after one warm-up); return markdown + medians."""
    import os

    from bench.common import STATS_HEADER, timed
    from clm.lifecycle import reports

    repeat = repeat or int(os.environ.get("BENCH_REPORT_REPEAT", "5"))

    today = datetime.now(UTC).date()
    year_ago = today - timedelta(days=365)
    all_from = today - timedelta(days=365 * YEARS + 1)
    cases = [
        ("funnel by cohort month, last 12 months, 90-day window",
         lambda: reports.funnel(start=year_ago, end=today, window_days=90, by="cohort")),
        ("funnel by source, last 12 months, 90-day window",
         lambda: reports.funnel(start=year_ago, end=today, window_days=90, by="source")),
        ("funnel by cohort month, whole history (3 years)",
         lambda: reports.funnel(start=all_from, end=today, window_days=90, by="cohort")),
        ("flows, last 12 months", lambda: reports.flows(start=year_ago, end=today)),
        ("flows, whole history", lambda: reports.flows(start=all_from, end=today)),
        ("velocity, visits entered in the last 12 months",
         lambda: reports.velocity(start=year_ago, end=today)),
        ("stage counts, 12 month ends", lambda: reports.stage_counts(months=12)),
    ]
    lines, medians = [STATS_HEADER], {}
    for label, fn in cases:
        stats = timed(fn, n=repeat, warmup=1)
        medians[label] = stats.median_ms / 1000
        lines.append(stats.row(label))
        print(stats.row(label), flush=True)
    return "\n".join(lines), medians


def _worst(medians: dict[str, float]) -> float:
    key = [v for k, v in medians.items() if k.startswith(("funnel", "flows")) and "12" in k]
    return max(key) if key else float("nan")


def calibrate() -> float:
    """Seconds for 10M additions in a Python loop: how busy this shared machine was."""
    t0 = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - t0


def report(*, contacts: int, rows: int, gen_s: float, table: str, medians: dict[str, float],
           table_idx: str, medians_idx: dict[str, float], index_s: float,
           calib_s: float) -> str:
    worst, worst_idx = _worst(medians), _worst(medians_idx)

    def verdict(s: float) -> str:
        return "meets" if s <= TARGET_S else "misses"

    return "\n".join([
        f"Synthetic history: {contacts:,} contacts, {rows:,} stage changes over {YEARS} years "
        f"(generated in {gen_s:.0f} s). SQLite, one process. Machine load: a 10M-step Python "
        f"loop took {calib_s:.2f} s during this run (about 0.5 s on an idle core).", "",
        "With the indexes the models have today:", "", table, "",
        f"With the proposed covering indexes on StageChange (built in {index_s:.0f} s): "
        + ", ".join(f"`{n}` {c}" for n, c in PROPOSED_INDEXES.items())
        + f", and `PRAGMA mmap_size={MMAP_BYTES}`:", "", table_idx, "",
        f"Funnel and flows over the last 12 months (the pages' default), slowest median: "
        f"{worst * 1000:.0f} ms today ({verdict(worst)} the ≤ {TARGET_S * 1000:.0f} ms "
        f"target), {worst_idx * 1000:.0f} ms with the proposed indexes and mmap "
        f"({verdict(worst_idx)} it).",
    ])


def measure_both() -> dict:
    calib = calibrate()
    table, medians = measure()
    index_s = create_proposed_indexes()
    table_idx, medians_idx = measure()
    return {"table": table, "medians": medians, "table_idx": table_idx,
            "medians_idx": medians_idx, "index_s": index_s, "calib_s": calib}


def run(ctx):
    """`make bench`: history for the seeded contacts, measured, then rolled back."""
    from django.db import transaction

    from bench.common import Section
    from clm.customers.models import Contact
    from clm.lifecycle.models import StageChange

    class Rollback(Exception):
        pass

    text = ""
    try:
        with transaction.atomic():
            StageChange.objects.all()._raw_delete(StageChange.objects.db)
            ids = list(Contact.objects.order_by("pk").values_list("pk", flat=True))
            t0 = time.perf_counter()
            rows = generate_history(ids)
            gen_s = time.perf_counter() - t0
            text = report(contacts=len(ids), rows=rows, gen_s=gen_s, **measure_both())
            raise Rollback  # the history, and the proposed indexes, go away again
    except Rollback:
        pass
    return [Section("Lifecycle reports", text)]


def main(argv: list[str]) -> None:
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clm.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone

    from clm.customers.models import Contact
    from clm.lifecycle.models import StageChange

    contacts = int(argv[0]) if argv else 100_000
    if StageChange._meta.db_table not in connection.introspection.table_names():
        call_command("migrate", verbosity=0)  # a fresh database; reused ones are left as is
    if not StageChange.objects.exists():
        t0 = time.perf_counter()
        rnd = random.Random(1)
        now = timezone.now()
        with transaction.atomic():
            Contact.objects.bulk_create(
                [Contact(first_name="B", last_name=str(i), source=rnd.choice(SOURCES),
                         created_at=now, updated_at=now) for i in range(contacts)],
                batch_size=5000)
            ids = list(Contact.objects.order_by("pk").values_list("pk", flat=True))
            rows = generate_history(ids)
        gen_s = time.perf_counter() - t0
        print(f"generated {contacts:,} contacts, {rows:,} stage changes in {gen_s:.1f} s")
    else:
        rows, gen_s = StageChange.objects.count(), 0.0
        contacts = Contact.objects.count()
    drop_proposed_indexes()
    try:
        print(report(contacts=contacts, rows=rows, gen_s=gen_s, **measure_both()))
    finally:
        drop_proposed_indexes()


if __name__ == "__main__":
    main(sys.argv[1:])

