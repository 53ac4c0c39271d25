"""`python -m bench.run` (what `make bench` runs): measure CLM on this machine, in one run,
and write docs/benchmarks.md.

Data size: BENCH_CONTACTS (default 1,000,000) and BENCH_EVENTS_PER_CONTACT (default 10);
BENCH_SEED (default 42). The database is a SQLite file under bench/out/<size>/ (gitignored),
seeded once with `clm seed_demo --no-hooks` and reused by later runs of the same size
(BENCH_FRESH=1 seeds again). BENCH_ONLY=ingest,reads runs only the named modules.
BENCH_OUTPUT overrides the report path (default docs/benchmarks.md). BENCH_DIR overrides the
database folder (e.g. a copy of a seeded folder, so two people can measure at once).

The interface for a benchmark module (tiny on purpose):

    # bench/bench_<topic>.py
    from bench.common import Context, Section

    ORDER = 50            # optional: lower runs earlier (default 50); ties by file name

    def run(ctx: Context) -> list[Section]:
        ...               # Django is set up against the seeded database: use the ORM,
                          # services, ctx.server() for a live HTTP server, ctx.stats(...)
        return [Section("Lifecycle rebuild", markdown_text)]

Every module bench/bench_*.py is discovered and run in order; a module that raises gets a
section saying so, and the others still run. Quote medians and p95 measured in this run:
the machine is shared and noisy.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _configure() -> None:
    """Point Django at the bench database before anything imports settings."""
    contacts = int(os.environ.get("BENCH_CONTACTS", "1000000"))
    epc = float(os.environ.get("BENCH_EVENTS_PER_CONTACT", "10"))
    out = Path(os.environ.get("BENCH_DIR") or ROOT / "bench" / "out" / f"c{contacts}_e{epc:g}")
    out.mkdir(parents=True, exist_ok=True)
    os.environ["CLM_VAR_DIR"] = str(out)
    os.environ.pop("DATABASE_URL", None)  # the bench measures the embedded SQLite database
    os.environ["DEBUG"] = "0"  # DEBUG keeps every query in memory: not what users run
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = "clm.settings"


def discover() -> list:
    import bench

    modules = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("bench_"):
            modules.append(importlib.import_module(f"bench.{info.name}"))
    only = {n.strip() for n in os.environ.get("BENCH_ONLY", "").split(",") if n.strip()}
    if only:
        modules = [m for m in modules if m.__name__.removeprefix("bench.bench_") in only]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.__name__))


def main() -> int:
    _configure()
    import django

    django.setup()
    from bench.common import Context, Section, machine_facts, render

    started = time.monotonic()
    ctx = Context.prepare()
    sections: list[Section] = []
    for module in discover():
        name = module.__name__
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            sections.extend(module.run(ctx))
        except Exception:
            traceback.print_exc()
            sections.append(Section(f"{name}: failed",
                                    "```\n" + traceback.format_exc()[-3000:] + "\n```"))
        print(f"   {time.monotonic() - t0:,.1f} s", flush=True)
    report = render(facts=machine_facts(ctx), ctx=ctx, sections=sections,
                    seconds=time.monotonic() - started)
    target = Path(os.environ.get("BENCH_OUTPUT", ROOT / "docs" / "benchmarks.md"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report)
    print(f"wrote {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
