"""Benchmark: CLM's CLV refresh vs the `lifetimes` package on the same synthetic purchases.

Stages, each in its own process (so peak memory is per stage):
  ours       model path from in-memory transactions: summary, BG/NBD + Gamma-Gamma fits,
             CLV, P(alive) and expected purchases for every customer (NumPy/SciPy)
  lifetimes  the same with lifetimes: summary_data_from_transaction_data, BetaGeoFitter,
             GammaGammaFitter, customer_lifetime_value, conditional_probability_alive
  load       (not timed as the refresh) the same purchases into a fresh database given by
             DATABASE_URL, then the purchase summary built from them (what ingest keeps
             current row by row) and the cost of keeping it current for one batch
  e2e        CLM's full refresh on that database, in a process of its own: summary read,
             fits, scores, health parts, write-back of every ContactScore row (`refresh_now`;
             steps include the commit)

The end-to-end stages run on a SQLite file in a temporary folder and, when PostgreSQL is
installed, on a throwaway cluster (scripts/with-postgres.sh), or on DATABASE_URL when it
names a PostgreSQL database.

Run: `python -m bench.bench_analytics --customers 100000` (default 1,000,000 customers with
about 10 transactions each); `--databases sqlite` to skip PostgreSQL. `run(ctx)` gives
bench/run.py its section.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
AS_OF = "2024-12-31"
EPOCH = np.datetime64("1970-01-01", "D")


def generate(n_customers: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Purchases drawn from a BG/NBD + Gamma-Gamma world: (contact id, day, amount, as_of day).

    First purchases spread over 2023-2024; about 10 transactions per customer on average.
    """
    rng = np.random.default_rng(seed)
    as_of_day = int((np.datetime64(AS_OF) - EPOCH).astype(int))
    start_day = as_of_day - 730
    first = start_day + rng.integers(0, 700, n_customers)
    window = (as_of_day - first).astype(np.float64)
    lam = rng.gamma(shape=2.0, scale=1 / 28.0, size=n_customers)   # purchases per day
    p = rng.beta(1.0, 6.0, n_customers)                             # dropout after a purchase
    alive_for = rng.geometric(np.maximum(p, 1e-6)) - 1               # purchases before dropout
    would_buy = rng.poisson(lam * window)
    dropped = alive_for < would_buy
    repeat = np.minimum(np.minimum(would_buy, alive_for), 200)
    # A customer who dropped out buys only in the first part of the window.
    active = np.where(dropped, window * (alive_for + 1) / (would_buy + 1), window)
    counts = 1 + repeat
    contact = np.repeat(np.arange(1, n_customers + 1, dtype=np.int64), counts)
    offsets = rng.random(contact.size) * np.repeat(active, counts)
    is_first = np.zeros(contact.size, dtype=bool)
    is_first[np.concatenate([[0], np.cumsum(counts)[:-1]])] = True
    offsets[is_first] = 0.0
    day = np.repeat(first, counts) + offsets.astype(np.int64)
    nu = rng.gamma(shape=3.0, scale=1 / 20.0, size=n_customers)
    amount = np.round(rng.gamma(shape=6.0, scale=1.0 / np.repeat(nu, counts)), 2) + 0.01
    return contact, day, amount, as_of_day


def _peak_mb() -> float:
    """This process's peak resident memory. Linux keeps ru_maxrss across exec, so a stage
    started by a large parent would report the parent's size; VmHWM belongs to this
    process's own address space."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """User + system CPU seconds of this process so far: less sensitive than wall time to
    other work on a shared machine (PostgreSQL's own CPU is not in it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stage_ours(n: int) -> dict:
    contact, day, amount, as_of_day = generate(n)
    from clm.analytics import scoring

    t0, c0 = time.perf_counter(), _cpu_s()
    summary = scoring.summary_from_arrays(contact, day, amount, as_of_day)
    t1 = time.perf_counter()
    result = scoring.score(summary, as_of_day)
    t2 = time.perf_counter()
    bg, gg = result.bgnbd, result.gamma_gamma
    return {"seconds": t2 - t0, "cpu_s": _cpu_s() - c0, "summary_s": t1 - t0,
            "steps": result.timings,
            "transactions": int(contact.size), "customers": len(summary.contact_id),
            "params": {**bg.params, **gg.params}, "bg_ll": bg.log_likelihood,
            "mean_clv": float(np.nanmean(result.predicted_clv)),
            "mean_p_alive": float(np.nanmean(result.p_alive)), "peak_mb": _peak_mb()}


def stage_lifetimes(n: int) -> dict:
    import warnings

    import pandas as pd

    warnings.filterwarnings("ignore")
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import summary_data_from_transaction_data

    contact, day, amount, _ = generate(n)
    frame = pd.DataFrame({"id": contact, "date": (EPOCH + day).astype("datetime64[ns]"),
                          "amount": amount})
    del contact, day, amount
    t0, c0 = time.perf_counter(), _cpu_s()
    summary = summary_data_from_transaction_data(
        frame, "id", "date", monetary_value_col="amount",
        observation_period_end=pd.Timestamp(AS_OF), freq="D", freq_multiplier=7)
    t1 = time.perf_counter()
    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(summary["frequency"], summary["recency"],
                                                summary["T"])
    t2 = time.perf_counter()
    repeat = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(repeat["frequency"], repeat["monetary_value"])
    t3 = time.perf_counter()
    clv = ggf.customer_lifetime_value(bgf, summary["frequency"], summary["recency"],
                                      summary["T"], summary["monetary_value"], time=12,
                                      discount_rate=0.01, freq="W")
    p_alive = bgf.conditional_probability_alive(summary["frequency"], summary["recency"],
                                                summary["T"])
    bgf.conditional_expected_number_of_purchases_up_to_time(90 / 7, summary["frequency"],
                                                            summary["recency"], summary["T"])
    t4 = time.perf_counter()
    bp, gp = bgf.params_, ggf.params_
    return {"seconds": t4 - t0, "cpu_s": _cpu_s() - c0, "summary_s": t1 - t0, "steps": {
                "bgnbd_fit": t2 - t1, "gamma_gamma_fit": t3 - t2, "predict": t4 - t3},
            "customers": len(summary),
            "params": {"r": bp["r"], "alpha": bp["alpha"], "a": bp["a"], "b": bp["b"],
                       "p": gp["p"], "q": gp["q"], "gamma": gp["v"]},
            "bg_ll": float(-bgf._negative_log_likelihood_ * len(summary)),
            "mean_clv": float(np.nanmean(clv)), "mean_p_alive": float(np.nanmean(p_alive)),
            "peak_mb": _peak_mb()}


def _django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "clm.settings"
    os.environ["DEBUG"] = "0"  # DEBUG keeps every query in memory
    import django

    django.setup()


def _load_rows_sqlite(cursor, ctable: str, ttable: str, n: int, contact, day, amount) -> None:
    chunk = 200_000
    for s in range(0, n, chunk):
        cursor.executemany(
            f"INSERT INTO {ctable} (id, first_name, last_name, phone, job_title, country, "
            "region, city, timezone, age_band, income_band, source, source_detail, stage, "
            "properties, search_text, created_at, updated_at) VALUES "
            "(%s, '', '', '', '', '', '', '', '', '', '', 'bench', '{}', '', '{}', '', "
            "'2023-01-01 00:00:00', '2023-01-01 00:00:00')",
            [(i,) for i in range(s + 1, min(n, s + chunk) + 1)])
    dates = np.datetime_as_string(EPOCH + day, unit="D")
    for s in range(0, contact.size, chunk):
        e = min(contact.size, s + chunk)
        rows = zip(contact[s:e].tolist(), [f"{d} 12:00:00" for d in dates[s:e]],
                   dates[s:e].tolist(), amount[s:e].tolist(), strict=True)
        cursor.executemany(
            f"INSERT INTO {ttable} (contact_id, occurred_at, occurred_on, amount, currency, "
            "source, created_at) VALUES (%s, %s, %s, %s, 'USD', 'bench', %s)",
            ((c, at, d, a, at) for c, at, d, a in rows))


def _load_rows_postgres(cursor, ctable: str, ttable: str, n: int, contact, day, amount) -> None:
    pg = cursor.cursor
    # A bench load, not product code: skip the per-row foreign-key triggers (superuser on the
    # throwaway cluster), as a restore does.
    cursor.execute("SET LOCAL session_replication_role = replica")
    cols = ("id, first_name, last_name, phone, job_title, country, region, city, timezone, "
            "age_band, income_band, source, source_detail, stage, properties, search_text, "
            "created_at, updated_at")
    chunk = 200_000
    with pg.copy(f"COPY {ctable} ({cols}) FROM STDIN") as copy:
        for s in range(0, n, chunk):
            copy.write("".join(f"{i}\t\t\t\t\t\t\t\t\t\t\tbench\t{{}}\t\t{{}}\t\t"
                               "2023-01-01 00:00:00+00\t2023-01-01 00:00:00+00\n"
                               for i in range(s + 1, min(n, s + chunk) + 1)))
    dates = np.datetime_as_string(EPOCH + day, unit="D")
    with pg.copy(f"COPY {ttable} (contact_id, occurred_at, occurred_on, amount, currency, "
                 "source, created_at) FROM STDIN") as copy:
        for s in range(0, contact.size, chunk):
            e = min(contact.size, s + chunk)
            copy.write("".join(
                f"{c}\t{d} 12:00:00+00\t{d}\t{a:.2f}\tUSD\tbench\t{d} 12:00:00+00\n"
                for c, d, a in zip(contact[s:e].tolist(), dates[s:e].tolist(),
                                   amount[s:e].tolist(), strict=True)))
    # The bench's explicit ids leave the sequence behind.
    cursor.execute(f"SELECT setval(pg_get_serial_sequence('{ctable}', 'id'), {n})")


def stage_load(n: int) -> dict:
    """Fill the database of DATABASE_URL with the purchases and build their summary."""
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("the load stage empties its database: give DATABASE_URL a throwaway one")
    _django()
    from django.core.management import call_command
    from django.db import connection, transaction

    from clm.analytics import summary
    from clm.analytics.models import Transaction
    from clm.customers.models import Contact

    call_command("migrate", verbosity=0)
    contact, day, amount, _ = generate(n)
    t0 = time.perf_counter()
    ctable, ttable = Contact._meta.db_table, Transaction._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {ttable}")
        cursor.execute(f"DELETE FROM {ctable}")
        load = _load_rows_postgres if connection.vendor == "postgresql" else _load_rows_sqlite
        load(cursor, ctable, ttable, n, contact, day, amount)
    load_s = time.perf_counter() - t0
    del contact, day, amount
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    t1 = time.perf_counter()
    with transaction.atomic():
        rows = summary.summaries_rebuild()
    rebuild_s = time.perf_counter() - t1
    # What ingest pays to keep the summary current: one batch of 500 buyers recomputed.
    rng = np.random.default_rng(3)
    batch = []
    for _ in range(5):
        ids = rng.choice(np.arange(1, n + 1), size=min(500, n), replace=False).tolist()
        t = time.perf_counter()
        with transaction.atomic():
            summary.summaries_update(ids)
        batch.append(time.perf_counter() - t)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"load_s": load_s, "summary_rebuild_s": rebuild_s, "summary_rows": rows,
            "update_500_ms": 1000 * float(np.median(batch)), "vendor": connection.vendor}


def stage_e2e(n: int) -> dict:
    """CLM's refresh as of AS_OF on the database stage_load filled (a process of its own)."""
    _django()
    from datetime import date

    from django.db import connection

    from clm.analytics.services import refresh_now

    t1, c1 = time.perf_counter(), _cpu_s()
    run = refresh_now(as_of=date.fromisoformat(AS_OF))
    seconds, cpu = time.perf_counter() - t1, _cpu_s() - c1
    assert run.status == "done", run.failure
    bg, gg = run.bgnbd, run.gamma_gamma
    return {"seconds": seconds, "cpu_s": cpu, "steps": run.timings, "vendor": connection.vendor,
            "customers": run.customer_count, "contacts": run.contact_count,
            "params": {k: bg[k] for k in ("r", "alpha", "a", "b")} | {
                k: gg[k] for k in ("p", "q", "gamma")},
            "peak_mb": _peak_mb()}


STAGES = {"ours": stage_ours, "lifetimes": stage_lifetimes, "load": stage_load, "e2e": stage_e2e}


# Multithreaded OpenBLAS spins on the tiny matrices of L-BFGS-B and on vector dots and
# costs 2-10x on a shared 2-core machine; every stage (lifetimes too) runs single-threaded.
STAGE_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _stage_cmd(stage: str, n: int) -> list[str]:
    return [sys.executable, "-m", "bench.bench_analytics", "--stage", stage, "--customers",
            str(n)]


def _run(cmd: list[str], env: dict | None = None) -> list[dict]:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False,
                         env={**os.environ, **STAGE_ENV, **(env or {})})
    if out.returncode != 0:
        return [{"error": (out.stderr or out.stdout)[-2000:]}]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _run_stage(stage: str, n: int, env: dict | None = None) -> dict:
    return _run(_stage_cmd(stage, n), env)[-1]


def _postgres_available() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def _e2e(database: str, n: int) -> dict:
    """load then e2e on `database` ("sqlite" or "postgresql"), each in its own process."""
    if database == "sqlite":
        tmp = Path(tempfile.mkdtemp(prefix="clm-bench-"))
        env = {"DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}", "CLM_VAR_DIR": str(tmp)}
        try:
            load = _run_stage("load", n, env)
            if "error" in load:
                return load
            return {**_run_stage("e2e", n, env), "load": load}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        load = _run_stage("load", n)
        return load if "error" in load else {**_run_stage("e2e", n), "load": load}
    # A throwaway cluster: both stages inside one with-postgres.sh call.
    script = " && ".join(" ".join(_stage_cmd(s, n)) for s in ("load", "e2e"))
    results = _run([str(ROOT / "scripts" / "with-postgres.sh"), "sh", "-c", script])
    if len(results) < 2:
        return results[-1] if results else {"error": "no output"}
    return {**results[1], "load": results[0]}


def _sig3(v: float) -> str:
    return f"{v:.3g}"


def report(n: int, databases: list[str]) -> str:
    """Run every stage and return the markdown section."""
    results = {"ours": _run_stage("ours", n), "lifetimes": _run_stage("lifetimes", n)}
    for database in databases:
        if database == "postgresql" and not (_postgres_available() or os.environ.get(
                "DATABASE_URL", "").startswith("postgres")):
            results["e2e postgresql"] = {"error": "PostgreSQL is not installed"}
            continue
        results[f"e2e {database}"] = _e2e(database, n)
    ours, lt = results["ours"], results["lifetimes"]
    lines = []
    if "transactions" in ours:
        lines += [f"{n:,} customers, {ours['transactions']:,} transactions (synthetic, BG/NBD + "
                  f"Gamma-Gamma world), as of {AS_OF}, time unit weeks. Every path runs in a "
                  "process of its own, single-threaded BLAS; peak RSS is that process's.", ""]
    lines += ["| path | seconds | CPU s | peak RSS MB | r | alpha | a | b | p | q | gamma |",
              "| --- | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- | --- |"]
    for name, res in results.items():
        if "error" in res:
            lines.append(f"| {name} | failed | | | | | | | | | |")
            continue
        pr = res["params"]
        lines.append(f"| {name} | {res['seconds']:.2f} | {res['cpu_s']:.2f} | {res['peak_mb']:.0f} | "
                     + " | ".join(_sig3(pr[k]) for k in ("r", "alpha", "a", "b", "p", "q", "gamma"))
                     + " |")
    lines.append("")
    if "seconds" in ours and "seconds" in lt:
        same = all(_sig3(ours["params"][k]) == _sig3(lt["params"][k]) for k in ours["params"])
        lines.append(f"- model path: CLM {lt['seconds'] / ours['seconds']:.1f}x faster than "
                     f"lifetimes (target >= 10x); parameters equal to 3 significant figures: "
                     f"{'yes' if same else 'no'}")
    for name, res in results.items():
        if not name.startswith("e2e") or "seconds" not in res or "seconds" not in lt:
            continue
        same = all(_sig3(res["params"][k]) == _sig3(lt["params"][k]) for k in res["params"])
        load = res["load"]
        lines.append(
            f"- {name} (summary read, fits, scores, write-back of {res['contacts']:,} score "
            f"rows): {lt['seconds'] / res['seconds']:.1f}x faster than lifetimes' model path "
            f"alone (target >= 5x), peak {res['peak_mb']:.0f} MB (target <= 1536); parameters "
            f"equal to lifetimes' to 3 significant figures: {'yes' if same else 'no'}")
        lines.append(
            f"  - not in the refresh: data load {load['load_s']:.0f} s; purchase summary built "
            f"from scratch {load['summary_rebuild_s']:.1f} s ({load['summary_rows']:,} rows); "
            f"kept current by ingest at {load['update_500_ms']:.0f} ms per batch of 500 buyers")
    for name, res in results.items():
        if "steps" in res:
            steps = ", ".join(f"{k} {v:.2f}" for k, v in res["steps"].items())
            summary_s = f"summary {res['summary_s']:.2f}, " if "summary_s" in res else ""
            lines.append(f"- {name} steps (s): {summary_s}{steps}")
        if "error" in res:
            lines.append(f"- {name} failed: `{res['error'].strip().splitlines()[-1]}`")
    return "\n".join(lines) + "\n"


def run(ctx=None) -> list:
    """bench/run.py's entry: one section. CLM_BENCH_CUSTOMERS overrides the size."""
    from bench.common import Section

    n = int(os.environ.get("CLM_BENCH_CUSTOMERS") or getattr(ctx, "contacts", 1_000_000))
    databases = os.environ.get("CLM_BENCH_DATABASES", "sqlite,postgresql").split(",")
    return [Section(f"CLV refresh: {n:,} customers vs lifetimes", report(n, databases))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", choices=sorted(STAGES))
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql")
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](args.customers), default=float))
    else:
        print(report(args.customers, args.databases.split(",")))


if __name__ == "__main__":
    main()
