"""Lifecycle engine: fold throughput, incremental engine throughput, and `lifecycle_rebuild`.

Target (issue #3): `clm lifecycle_rebuild` at 1M contacts / 10M events in at most 60 s.

In `make bench` the rebuild runs as the real command (a subprocess, Django start-up
included) on the seeded database, twice: the first run after seeding builds every history
row, state and stage.changed event from nothing; the second finds everything equal (the
steady state of a nightly rebuild). Then twice after a change of the rules, what a rebuild is
run for: the churn window (CLM_CHURN_AFTER_DAYS) from 365 to 180 days, and back. The
lifecycle's output is emptied first, so the first run builds from nothing on a reused
database too (BENCH_LIFECYCLE_FROM_EMPTY=0 keeps what is there).

Standalone (own throwaway SQLite database):
    CLM_VAR_DIR=$(mktemp -d) python -m bench.bench_lifecycle 10000 10   # contacts, events each
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

ORDER = 60
TARGET_S = 60.0
BATCH = 1000  # events per events_apply call: the size of one ingest batch
KINDS = [  # (kind, weight, properties factory) for the incremental measurement
    ("page.viewed", 40, lambda r: {"url": "/p"}),
    ("email.opened", 20, lambda r: {"campaign_id": 1}),
    ("form.submitted", 8, lambda r: {"form_type": r.choice(["subscribe", "demo", "contact"])}),
    ("lead.scored", 8, lambda r: {"lead_score": r.randint(0, 100)}),
    ("lead.accepted", 3, lambda r: {}),
    ("deal.created", 3, lambda r: {"deal_id": 1}),
    ("order.completed", 8, lambda r: {"order_id": 1, "amount": "10.00"}),
    ("nps.answered", 4, lambda r: {"score": r.randint(0, 10)}),
    ("subscription.canceled", 2, lambda r: {}),
    ("note.added", 4, lambda r: {"body": "x"}),
]


def _kinds(rnd: random.Random):
    kinds = [k for k, w, _ in KINDS for _ in range(w)]
    factories = {k: f for k, _, f in KINDS}

    def one() -> tuple[str, dict]:
        kind = rnd.choice(kinds)
        return kind, factories[kind](rnd)
    return one


def fold_throughput(n_events: int = 300_000, seed: int = 1) -> tuple[float, float]:
    """Events per second through the rules in memory: (wall, CPU time of this process)."""
    import json

    from clm.lifecycle.engine import load_fold
    from clm.lifecycle.fold import RANK_EVENT, State

    fold = load_fold()
    rnd = random.Random(seed)
    one = _kinds(rnd)
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    per_contact = 10
    batches = []
    for c in range(n_events // per_contact):
        batch = []
        for i in range(per_contact):
            kind, props = one()
            # Properties as the rebuild reads them: JSON text, parsed only if a rule needs it.
            batch.append((t0 + timedelta(hours=c % 1000 + i * 24), RANK_EVENT,
                          c * per_contact + i, kind, json.dumps(props)))
        batches.append(batch)
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        fold.run(State(), batch, [], None, until=t0)
    return n_events / (time.perf_counter() - wall), n_events / (time.process_time() - cpu)


def incremental_throughput(sample_contacts: int = 2000, per_contact: int = 5,
                           late_share: float = 0.0, seed: int = 7) -> dict:
    """`events_apply` on new events in batches of BATCH (rolled back afterwards).

    With `late_share`, that share of the events occurred a year ago: their contacts replay.
    Returns events/s (wall and CPU) and batch latencies.
    """
    from django.db import transaction
    from django.utils import timezone

    from bench.common import stats
    from clm.customers.models import Contact
    from clm.lifecycle import engine
    from clm.timeline.models import Event

    rnd = random.Random(seed)
    one = _kinds(rnd)
    hi = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    ids = sorted(Contact.objects.filter(pk__in=[rnd.randint(1, hi) for _ in range(
        sample_contacts * 2)]).values_list("pk", flat=True))[:sample_contacts]
    now = timezone.now()

    class Rollback(Exception):
        pass

    samples: list[float] = []
    cpu = 0.0
    n = 0
    try:
        with transaction.atomic():
            events = []
            for i in range(per_contact):  # a batch mixes contacts, as ingest does
                for cid in ids:
                    kind, props = one()
                    at = now + timedelta(seconds=i)
                    if late_share and rnd.random() < late_share:
                        at = now - timedelta(days=365, seconds=rnd.randint(0, 86400))
                    events.append(Event(contact_id=cid, kind=kind, recorded_at=now,
                                        source="bench", occurred_at=at, properties=props))
            saved = Event.objects.bulk_create(events, batch_size=5000)
            event_ids = [e.pk for e in saved]
            n = len(event_ids)
            for start in range(0, n, BATCH):
                wall, c0 = time.perf_counter(), time.process_time()
                engine.events_apply(event_ids[start:start + BATCH])
                samples.append(time.perf_counter() - wall)
                cpu += time.process_time() - c0
            raise Rollback
    except Rollback:
        pass
    total = sum(samples)
    return {"events": n, "eps": n / total if total else 0.0, "eps_cpu": n / cpu if cpu else 0.0,
            "batches": stats(samples) if samples else None}


SUMMARY = re.compile(r"Rebuilt ([\d,]+) contacts from ([\d,]+) events: ([\d,]+) stage changes "
                     r"in ([\d.]+) s(?: \((.*)\))?")


def rebuild_command(env: dict[str, str], **settings: str) -> dict:
    """Run `clm lifecycle_rebuild` as a user would; wall time includes Django's start-up.

    `settings`: environment variables for this run (e.g. CLM_CHURN_AFTER_DAYS="180").
    """
    env = {**env, **settings}
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "clm", "lifecycle_rebuild"], env=env,
                         capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    match = SUMMARY.search(out)
    if not match:
        raise RuntimeError(f"unexpected lifecycle_rebuild output: {out[-500:]}")
    return {"wall": wall, "contacts": int(match[1].replace(",", "")),
            "events": int(match[2].replace(",", "")), "moves": int(match[3].replace(",", "")),
            "inside": float(match[4]), "phases": match[5] or ""}


def rebuild_in_process() -> dict:
    from clm.lifecycle.services import lifecycle_rebuild

    started = time.perf_counter()
    stats = lifecycle_rebuild()
    wall = time.perf_counter() - started
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in stats.extra.get("seconds", {}).items()
                       if v >= 0.05)
    if stats.extra.get("workers"):
        phases += f"; {stats.extra['workers']} workers busy " + ", ".join(
            f"{k} {v:.1f} s" for k, v in stats.extra["worker_seconds"].items() if v >= 0.05)
    return {"wall": wall, "contacts": stats.contacts, "events": stats.events,
            "moves": stats.moves, "inside": wall, "phases": phases}


def empty_lifecycle_output() -> None:
    """Remove history, states, stage.changed events and stages (the state right after seeding)."""
    from django.db import connection, transaction

    from clm.customers.models import Company, Contact
    from clm.lifecycle.models import ContactState, StageChange
    from clm.timeline.models import Event

    with transaction.atomic(), connection.cursor() as cursor:
        for model in (StageChange, ContactState):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")
        cursor.execute(f"DELETE FROM {Event._meta.db_table} WHERE kind = %s",
                       ["stage.changed"])
        for model in (Contact, Company):
            cursor.execute(f"UPDATE {model._meta.db_table} SET stage = '' "
                           "WHERE stage <> ''")


def _verdict(seconds: float, total_events: int) -> str:
    per_10m = seconds / max(1, total_events) * 10_000_000
    ok = "meets" if per_10m <= TARGET_S else "misses"
    if total_events >= 9_000_000:
        return f"{ok} the target (≤ {TARGET_S:.0f} s)"
    return f"{per_10m:.0f} s extrapolated to 10M events: {ok} the target (≤ {TARGET_S:.0f} s)"


def report(*, fold_eps: tuple[float, float], inc: dict, late: dict | None, runs: list[tuple],
           total_events: int) -> str:
    lines = [
        "| measure | value |", "| --- | --- |",
        f"| rules fold, in memory (events as the rebuild reads them) | {fold_eps[0]:,.0f} "
        f"events/s ({fold_eps[1]:,.0f} per CPU-second) |",
        f"| incremental engine: `events_apply`, batches of {BATCH:,} new in-order events | "
        f"{inc['eps']:,.0f} events/s ({inc['eps_cpu']:,.0f} per CPU-second); batch median "
        f"{inc['batches'].median_ms:.0f} ms, p95 {inc['batches'].p95_ms:.0f} ms |",
    ]
    if late:
        lines.append(
            f"| incremental engine, 10% of events late (their contacts replay) | "
            f"{late['eps']:,.0f} events/s; batch median {late['batches'].median_ms:.0f} ms, "
            f"p95 {late['batches'].p95_ms:.0f} ms |")
    for label, r in runs:
        lines.append(
            f"| `lifecycle_rebuild`, {label}: {total_events:,} events in the database, "
            f"{r['events']:,} read, {r['contacts']:,} contacts, {r['moves']:,} moves | "
            f"**{r['wall']:.1f} s** ({_verdict(r['wall'], total_events)}); "
            f"inside the command {r['inside']:.1f} s: {r['phases']} |")
    lines += [
        "",
        "The rebuild reads only event kinds some rule reads (plus purchases for inactivity "
        "churn) straight from the driver, with properties only for kinds whose rules read "
        "them, folds each contact in Python (the same fold as the incremental engine) and "
        "writes only what differs from what is stored, per range of 50,000 contact ids. On "
        "SQLite, worker processes (one per core) read, fold and compare ranges while the "
        "command's own process writes them, in one transaction. Phases: read = SQL and "
        "fetching; fold = parsing times, sorting, the rules, building rows; compare = reading "
        "the stored rows and finding what differs; wait = the writer waiting for a worker; "
        "write = writing history, states, `stage.changed` events and Contact.stage; "
        "companies = Company.stage. Workers' phases are summed over workers. The machine is "
        "shared: CPU-second figures are less noisy than wall time.",
    ]
    return "\n".join(lines)


def run(ctx):
    from bench.common import Section
    from clm.lifecycle.models import StageChange
    from clm.timeline.models import Event

    fold_eps = fold_throughput()
    inc = incremental_throughput()
    late = incremental_throughput(late_share=0.1, seed=8)
    # The ingest benchmark's task worker has built the history of the contacts it touched:
    # the first run starts from nothing unless BENCH_LIFECYCLE_FROM_EMPTY=0.
    if os.environ.get("BENCH_LIFECYCLE_FROM_EMPTY", "1") == "1":
        empty_lifecycle_output()
    first = "first run, from nothing" if not StageChange.objects.exists() \
        else "first run (history already there)"
    total = Event.objects.exclude(kind="stage.changed").count()
    runs = [(first, rebuild_command(ctx.env()))]
    runs.append(("second run, nothing changed", rebuild_command(ctx.env())))
    # Why people rebuild: a rule changed. Here the churn window (days without a purchase
    # before a customer churns) goes from 365 to 180 days, then back.
    runs.append(("third run, after the churn window changed from 365 to 180 days",
                 rebuild_command(ctx.env(), CLM_CHURN_AFTER_DAYS="180")))
    runs.append(("fourth run, churn window back to 365 days", rebuild_command(ctx.env())))
    ctx.refresh_counts()
    return [Section("Lifecycle engine and rebuild",
                    report(fold_eps=fold_eps, inc=inc, late=late, runs=runs,
                           total_events=total))]


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clm.settings")
    os.environ.setdefault("DEBUG", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    from clm.core.seeding import seed_population
    from clm.customers.models import Contact
    from clm.timeline.models import Event

    contacts = int(argv[0]) if argv else 10000
    epc = float(argv[1]) if len(argv) > 1 else 10
    call_command("migrate", verbosity=0)
    if not Contact.objects.exists():
        t0 = time.perf_counter()
        seed_population(contacts=contacts, events_per_contact=epc)
        print(f"seeded {contacts} contacts x {epc:g} events in {time.perf_counter() - t0:.1f} s")
    total = Event.objects.exclude(kind="stage.changed").count()
    fold_eps = fold_throughput()
    runs = [("first run", rebuild_in_process()), ("second run", rebuild_in_process())]
    inc = incremental_throughput()
    late = incremental_throughput(late_share=0.1, seed=8)
    print(report(fold_eps=fold_eps, inc=inc, late=late, runs=runs, total_events=total))


if __name__ == "__main__":
    main(sys.argv[1:])
