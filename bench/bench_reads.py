"""p95 of the pages and API reads people use most, over HTTP against the seeded database.

Target (issue #2): each at most 100 ms p95 at 1M contacts / 10M events.
"""

from __future__ import annotations

import os
import random
from urllib.parse import quote

from bench.client import bearer, bench_admin, request, session_cookie
from bench.common import Context, Section, stats

ORDER = 10
TARGET_MS = 100.0


def _probe(base: str, headers: dict[str, str], paths: list[str]) -> tuple[list[float], set[int]]:
    import time

    samples, statuses = [], set()
    for path in paths[:3]:  # warm-up
        request("GET", base + path, headers=headers)
    for path in paths:
        t0 = time.perf_counter()
        r = request("GET", base + path, headers=headers)
        samples.append(time.perf_counter() - t0)
        statuses.add(r.status)
    return samples, statuses


def run(ctx: Context) -> list[Section]:
    from django.contrib.auth import get_user_model

    from clm.customers.models import Contact

    n = int(os.environ.get("BENCH_READ_N", "60"))
    rnd = random.Random(ctx.seed)
    admin = bench_admin()
    sales = get_user_model().objects.get(username="sam")
    max_id = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 1
    ids = [rnd.randint(1, max_id) for _ in range(n + 3)]
    people = list(Contact.objects.filter(pk__in=ids[: n + 3]).values_list("last_name", "email"))
    terms = []
    for i, (last, email) in enumerate(people or [("smith", None)]):
        if i % 2 and email:
            terms.append(email.split("@")[0][:6])
        else:
            terms.append(last.lower()[:4])
    terms = (terms * (n // max(1, len(terms)) + 2))[: n + 3]
    candidates = [rnd.randint(1, max_id) for _ in range(10 * (n + 3))]
    owned = list(Contact.objects.filter(owner=sales, pk__in=candidates)
                 .values_list("pk", flat=True)[: n + 3])
    owned = (owned * (n // max(1, len(owned)) + 2))[: n + 3] if owned else ids

    cases = [
        ("contact list page (admin)", "session_admin", ["/contacts/"] * (n + 3)),
        ("contact list page (sales rep, own records)", "session_sales", ["/contacts/"] * (n + 3)),
        ("contact list page, page 50", "session_admin", ["/contacts/?page=50"] * (n + 3)),
        ("search page (name or email prefix)", "session_admin",
         [f"/contacts/?q={quote(t)}" for t in terms]),
        ("contact page (profile + timeline)", "session_admin", [f"/contacts/{i}/" for i in ids]),
        ("contact page (sales rep, own contact)", "session_sales",
         [f"/contacts/{i}/" for i in owned]),
        ("API: list contacts", "token", ["/api/v1/contacts?limit=50"] * (n + 3)),
        ("API: search contacts", "token", [f"/api/v1/contacts?q={quote(t)}" for t in terms]),
        ("API: a contact's events", "token", [f"/api/v1/events?contact_id={i}" for i in ids]),
    ]
    auth = {"session_admin": session_cookie(admin), "session_sales": session_cookie(sales),
            "token": bearer(admin)}
    rows, failures = [], []
    with ctx.server() as base:
        for label, who, paths in cases:
            samples, statuses = _probe(base, auth[who], paths)
            s = stats(samples)
            ok = statuses <= {200}
            verdict = ("yes" if s.p95_ms <= TARGET_MS else "**no**") if ok else \
                f"n/a (HTTP {sorted(statuses)})"
            rows.append(s.row(label) + f" {verdict} |")
            if not ok:
                failures.append(f"{label}: HTTP {sorted(statuses)}")
            print(f"   {label}: median {s.median_ms:.1f} ms, p95 {s.p95_ms:.1f} ms {statuses}",
                  flush=True)
    header = ("| what | n | median ms | p95 ms | max ms | p95 ≤ 100 ms |\n"
              "|---|---:|---:|---:|---:|---|")
    text = (
        f"Each line: {n} requests (after 3 warm-ups) over HTTP to `clm serve` (gunicorn's "
        "threaded worker, as `make run` serves; DEBUG off) on 127.0.0.1, one at a time, with a "
        "logged-in session (pages) or a Bearer token (API); different contacts and search "
        "terms on each request. Target: p95 ≤ "
        f"{TARGET_MS:.0f} ms.\n\n" + header + "\n" + "\n".join(rows))
    if failures:
        text += "\n\nNot measured (the endpoint did not answer 200): " + "; ".join(failures)
    return [Section("Reads: pages and API", text)]
