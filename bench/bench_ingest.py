"""Event ingest: POST /api/v1/events/batch over HTTP against the raw insert rate of the same
SQLite database. Target (issue #2): HTTP ingest at least 25 % of the raw rate.

Both write into the seeded bench database (its indexes at full size), with unique
idempotency keys per run; the rows stay (a few hundred thousand next to millions).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta

from bench.client import bearer, bench_admin, request
from bench.common import Context, Section, stats

ORDER = 20
TARGET_RATIO = 0.25
KINDS = ["page.viewed", "email.opened", "order.completed", "form.submitted"]


def _event(rnd: random.Random, key: str, email: str, now: datetime) -> dict:
    kind = rnd.choice(KINDS)
    props: dict = {"url": "/pricing"} if kind == "page.viewed" else {"campaign": "bench"}
    if kind == "order.completed":
        props = {"order_id": key, "amount": f"{rnd.uniform(5, 300):.2f}", "currency": "USD"}
    return {"idempotency_key": key, "email": email, "kind": kind,
            "occurred_at": (now - timedelta(seconds=rnd.randint(0, 86_400 * 30))).isoformat(),
            "properties": props}


def raw_insert_rate(*, rows: int, contact_ids: list[int], run_id: str) -> float:
    """Rows/s of one executemany INSERT of `rows` events in one transaction, committed."""
    from django.db import connection, transaction

    rnd = random.Random(1)
    now = datetime.now(UTC)
    data = []
    for i in range(rows):
        at = (now - timedelta(seconds=rnd.randint(0, 86_400 * 30))).strftime(
            "%Y-%m-%d %H:%M:%S.%f")
        data.append((rnd.choice(contact_ids), rnd.choice(KINDS), at, at, "ingest",
                     json.dumps({"url": "/pricing"}), f"bench-raw-{run_id}-{i}"))
    connection.ensure_connection()
    t0 = time.perf_counter()
    with transaction.atomic():
        connection.connection.executemany(
            "INSERT INTO timeline_event (contact_id, kind, occurred_at, recorded_at, source, "
            "properties, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?)", data)
    return rows / (time.perf_counter() - t0)


def _background_work(ctx: Context, *, since: datetime, events: int) -> dict:
    """Run the real task worker once over the tasks enqueued since `since` (the background
    work of `events` ingested events); how fast it got through them."""
    import subprocess
    import sys

    from django_tasks_db.models import DBTaskResult

    tasks = DBTaskResult.objects.filter(enqueued_at__gte=since, status="READY").count()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clm", "db_worker", "--batch", "--queue-name", "*",
                    "--no-startup-delay", "--no-reload"], env=ctx.env(), check=True,
                   capture_output=True)
    seconds = time.perf_counter() - t0
    failed = DBTaskResult.objects.filter(enqueued_at__gte=since).exclude(
        status="SUCCESSFUL").count()
    rate = f"{events / seconds:,.0f} ({tasks:,} tasks in {seconds:,.1f} s, worker start included" + (
        f"; {failed} not successful)" if failed else ")")
    return {"tasks": tasks, "rate": rate}


def run(ctx: Context) -> list[Section]:
    from django.db import connection

    from clm.customers.models import Contact

    if connection.vendor != "sqlite":
        return [Section("Ingest", "Skipped: the ingest benchmark measures the SQLite database.")]
    batches = int(os.environ.get("BENCH_INGEST_BATCHES", "60"))
    batch_size = int(os.environ.get("BENCH_INGEST_BATCH_SIZE", "1000"))
    clients = int(os.environ.get("BENCH_INGEST_CLIENTS", "2"))
    raw_rows = int(os.environ.get("BENCH_RAW_ROWS", str(batches * batch_size // 2)))
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    rnd = random.Random(ctx.seed)
    max_id = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 1
    sample_ids = [rnd.randint(1, max_id) for _ in range(20_000)]
    emails = [e for e in Contact.objects.filter(pk__in=sample_ids, email__isnull=False)
              .values_list("email", flat=True)]
    contact_ids = sorted(Contact.objects.filter(pk__in=sample_ids).values_list("pk", flat=True))

    # (1) the raw insert rate, three times, median
    raw_rates = [raw_insert_rate(rows=raw_rows, contact_ids=contact_ids, run_id=f"{run_id}-{r}")
                 for r in range(3)]
    raw = statistics.median(raw_rates)
    print(f"   raw insert: {raw:,.0f} rows/s ({', '.join(f'{r:,.0f}' for r in raw_rates)})",
          flush=True)

    # (2) HTTP: prebuilt bodies, 95 % known contacts and 5 % new ones, `clients` in parallel
    now = datetime.now(UTC)
    bodies = []
    for b in range(batches):
        events = []
        for i in range(batch_size):
            key = f"bench-http-{run_id}-{b}-{i}"
            email = rnd.choice(emails) if rnd.random() < 0.95 else \
                f"bench-{run_id}-{b}-{i}@ingest.example"
            events.append(_event(rnd, key, email, now))
        bodies.append(json.dumps({"events": events}).encode())
    headers = {**bearer(bench_admin()), "Content-Type": "application/json"}
    latencies: list[float] = []
    created = [0]
    errors: list[str] = []
    lock = threading.Lock()

    started = datetime.now(UTC)
    with ctx.server() as base:
        url = f"{base}/api/v1/events/batch"
        r = request("POST", url, headers=headers, body=bodies[0])  # warm-up (counted below)
        if r.status != 200:
            return [Section("Ingest: HTTP batch vs raw insert",
                            f"Raw insert: {raw:,.0f} rows/s. HTTP ingest not measured: "
                            f"POST /api/v1/events/batch answered {r.status}: {r.body[:300]!r}")]
        warm_created = r.json().get("created", 0)
        queue = list(range(1, batches))

        def client() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    b = queue.pop(0)
                t0 = time.perf_counter()
                resp = request("POST", url, headers=headers, body=bodies[b])
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    if resp.status == 200:
                        created[0] += resp.json().get("created", 0)
                    else:
                        errors.append(f"{resp.status}: {resp.body[:200]!r}")

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        # a retried batch must create nothing
        retry = request("POST", url, headers=headers, body=bodies[-1]).json()

    background = _background_work(ctx, since=started, events=created[0] + warm_created)

    sent = (batches - 1) * batch_size
    http_rate = sent / wall
    ratio = http_rate / raw
    lat = stats(latencies)
    verdict = "yes" if ratio >= TARGET_RATIO else "**no**"
    text = f"""\
(1) Raw insert: `executemany` of one INSERT per row into `timeline_event` (all its indexes,
with idempotency keys), {raw_rows:,} rows in one transaction, committed; median of 3 runs
({", ".join(f"{r:,.0f}" for r in raw_rates)} rows/s).

(2) HTTP: `POST /api/v1/events/batch` with {batch_size:,} events per request (95 % for
known contacts by email, 5 % creating a new contact), {batches - 1} requests after one
warm-up, {clients} client threads, Bearer token, `clm serve` (gunicorn, threaded, as
`make run` serves; DEBUG off) on 127.0.0.1, against the same database file. Every event
went through validation, the idempotency check, contact lookup/creation, the insert and
the after-commit consumers. What the consumers hand to the task worker (the lifecycle
engine, purchases and active months, known contacts' last_activity_at) is not part of this
figure: no worker runs meanwhile. (3) The task worker afterwards: `clm db_worker --batch`
run once over the {background["tasks"]:,} tasks those requests left, one process.

| measure | value |
|---|---:|
| raw insert, rows/s | {raw:,.0f} |
| HTTP ingest, events/s | {http_rate:,.0f} |
| HTTP / raw | {ratio:.1%} (target ≥ {TARGET_RATIO:.0%}: {verdict}) |
| events created (of {sent + batch_size:,} sent) | {created[0] + warm_created:,} |
| request latency median / p95 | {lat.median_ms:,.0f} ms / {lat.p95_ms:,.0f} ms |
| retried batch: created / duplicate | {retry.get("created")} / {retry.get("duplicate")} |
| task worker: the requests' background work, events/s | {background["rate"]} |
"""
    if errors:
        text += f"\nErrors ({len(errors)}): {errors[:3]}\n"
    print(f"   HTTP ingest: {http_rate:,.0f} events/s = {ratio:.1%} of raw", flush=True)
    return [Section("Ingest: HTTP batch vs raw insert", text)]
