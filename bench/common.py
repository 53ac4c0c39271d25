"""What every benchmark module gets: the seeded database, a live server, timing helpers."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Section:
    title: str
    markdown: str


@dataclass
class Stats:
    n: int
    median_ms: float
    p95_ms: float
    max_ms: float

    def row(self, label: str) -> str:
        return f"| {label} | {self.n} | {self.median_ms:.1f} | {self.p95_ms:.1f} | {self.max_ms:.1f} |"


def stats(samples_s: list[float]) -> Stats:
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms) + 0.5) - 1))]
    return Stats(len(ms), statistics.median(ms), p95, ms[-1])


STATS_HEADER = "| what | n | median ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|"


def timed(fn: Callable[[], object], *, n: int, warmup: int = 3) -> Stats:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return stats(samples)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Context:
    """The seeded bench database and facts about it; modules may add to `notes`."""

    contacts: int
    events_per_contact: float
    seed: int
    var_dir: Path
    seed_seconds: float | None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def get(self, key: str, default=None):
        """Dict-style access to the attributes above, for modules written that way."""
        return getattr(self, key, default)

    @property
    def db_path(self) -> Path:
        return self.var_dir / "clm.sqlite3"

    @classmethod
    def prepare(cls) -> Context:
        """Migrate and seed the bench database (reused when its marker matches)."""
        from django.conf import settings
        from django.core.management import call_command

        contacts = int(os.environ.get("BENCH_CONTACTS", "1000000"))
        epc = float(os.environ.get("BENCH_EVENTS_PER_CONTACT", "10"))
        seed = int(os.environ.get("BENCH_SEED", "42"))
        var_dir = Path(settings.VAR_DIR)
        marker = var_dir / "seed.json"
        want = {"contacts": contacts, "events_per_contact": epc, "seed": seed}
        fresh = os.environ.get("BENCH_FRESH") == "1"
        info = json.loads(marker.read_text()) if marker.exists() else {}
        if fresh or {k: info.get(k) for k in want} != want:
            for name in ("clm.sqlite3", "clm.sqlite3-wal", "clm.sqlite3-shm", "seed.json"):
                (var_dir / name).unlink(missing_ok=True)
            call_command("migrate", verbosity=0, interactive=False)
            print(f"seeding {contacts:,} contacts x {epc:g} events…", flush=True)
            t0 = time.monotonic()
            call_command("seed_demo", contacts=contacts, seed=seed, events_per_contact=epc,
                         no_hooks=True, stdout=sys.stdout)
            info = {**want, "seed_seconds": round(time.monotonic() - t0, 1),
                    "seeded_at": datetime.now(UTC).isoformat(timespec="seconds")}
            marker.write_text(json.dumps(info))
        else:
            call_command("migrate", verbosity=0, interactive=False)
            print(f"reusing {var_dir} (seeded {info.get('seeded_at')})", flush=True)
        ctx = cls(contacts=contacts, events_per_contact=epc, seed=seed, var_dir=var_dir,
                  seed_seconds=info.get("seed_seconds"))
        ctx.refresh_counts()
        return ctx

    def refresh_counts(self) -> None:
        from clm.customers.models import Company, Contact
        from clm.timeline.models import Event

        self.counts = {"contacts": Contact.objects.count(), "companies": Company.objects.count(),
                       "events": Event.objects.count()}

    def env(self) -> dict[str, str]:
        return {**os.environ, "CLM_VAR_DIR": str(self.var_dir), "DEBUG": "0",
                "DJANGO_SETTINGS_MODULE": "clm.settings", "LOG_LEVEL": "WARNING"}

    @contextlib.contextmanager
    def server(self) -> Iterator[str]:
        """The web server `make run` starts (`clm serve`: gunicorn, threaded), DEBUG off, on a
        free port."""
        from clm.core.management.commands.run_services import plan_services

        port = free_port()
        web, = plan_services(host="127.0.0.1", port=port, worker=False, scheduler=False)
        log = open(self.var_dir / "server.log", "ab")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(web.argv, env=self.env(), stdout=log, stderr=log,
                                start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/healthz", timeout=30) as r:  # noqa: S310
                        if r.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass  # not listening yet, or still importing the project
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"bench server did not start; see {log.name}")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


def machine_facts(ctx: Context) -> list[tuple[str, str]]:
    import django

    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    pg = "not installed"
    pg_bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    postgres = str(pg_bins[-1]) if pg_bins else shutil.which("postgres")
    if postgres:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            pg = subprocess.run([postgres, "--version"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
    size = sum(p.stat().st_size for p in ctx.var_dir.glob("clm.sqlite3*"))
    return [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU cores (nproc)", str(os.cpu_count())),
        ("memory", mem),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("Django", django.get_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", pg),
        ("load average (1/5/15 min) at the end", " / ".join(f"{x:.1f}" for x in os.getloadavg())),
        ("bench database", f"SQLite (WAL), {size / 1e9:.2f} GB"),
    ]


def render(*, facts: list[tuple[str, str]], ctx: Context, sections: list[Section],
           seconds: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`); every figure below comes from one run "
        "on the machine described here. The machine is shared and noisy: read medians and "
        "p95, and ratios measured in the same run.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in facts],
        "",
        "## Data",
        "",
        f"Seeded with `clm seed_demo --contacts {ctx.contacts} --events-per-contact "
        f"{ctx.events_per_contact:g} --seed {ctx.seed}` "
        f"(BENCH_CONTACTS, BENCH_EVENTS_PER_CONTACT, BENCH_SEED).",
        "",
        "| table | rows |",
        "|---|---:|",
        *[f"| {k} | {v:,} |" for k, v in ctx.counts.items()],
        "",
    ]
    if ctx.seed_seconds is not None:
        lines += [f"Seeding took {ctx.seed_seconds:,.0f} s "
                  f"({ctx.counts.get('events', 0) / max(ctx.seed_seconds, 1e-9):,.0f} events/s "
                  "including contacts, consents, tags and index builds).", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown.strip(), ""]
    if ctx.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in ctx.notes], ""]
    lines += [f"_Whole run: {seconds:,.0f} s._", ""]
    return "\n".join(lines)
