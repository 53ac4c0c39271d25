"""`clm run_services [--host H] [--port P]`: the web server, the task worker and the
scheduler, side by side, as child processes (what `make run` ends with).

- web: `clm serve` on host:port (gunicorn, threaded worker; static files by WhiteNoise).
- worker: `clm db_worker --queue-name * --no-reload` (Django Tasks, database backend).
- scheduler: `clm run_scheduler`, when an installed app provides that command.

SIGINT and SIGTERM are passed on to every child. If one child exits, the others are
stopped and the command exits non-zero, so a supervisor (or the person at the terminal)
sees the failure instead of a half-running system.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError, CommandParser

STOP_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]


def clm_argv(*args: str) -> list[str]:
    """Run a `clm` management command with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "clm", *args]


def plan_services(*, host: str, port: int, worker: bool = True,
                  scheduler: bool = True, commands: dict | None = None) -> list[Service]:
    """The child processes to start, in order."""
    available = get_commands() if commands is None else commands
    services = [Service("web", clm_argv("serve", "--host", host, "--port", str(port)))]
    if worker:
        services.append(Service("worker", clm_argv("db_worker", "--queue-name", "*",
                                                   "--no-reload")))
    if scheduler and "run_scheduler" in available:
        services.append(Service("scheduler", clm_argv("run_scheduler")))
    return services


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise CommandError(f"--port must be a number, not '{value}'.") from None
    if not 1 <= port <= 65535:
        raise CommandError(f"--port must be between 1 and 65535, not {port}.")
    return port


class Supervisor:
    """Starts services, forwards stop signals, and stops all when one ends."""

    def __init__(self, services: list[Service], write) -> None:
        self.services = services
        self.write = write
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for service in self.services:
                # A session of its own: a Ctrl-C reaches the children only through us,
                # once, and in order.
                self.procs[service.name] = subprocess.Popen(  # noqa: S603 - our own argv
                    service.argv, start_new_session=True)
                self.write(f"started {service.name} (pid {self.procs[service.name].pid})")
            failed = None
            while not self.stopping and failed is None:
                time.sleep(0.3)
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        failed = (name, proc.returncode)
                        break
            if failed:
                self.write(f"{failed[0]} exited with status {failed[1]}; stopping the others")
            self.stop_all()
            return 0 if failed is None else (failed[1] if failed[1] > 0 else 1)
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop_all(self) -> None:
        alive = [p for p in self.procs.values() if p.poll() is None]
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Command(BaseCommand):
    help = "Run the web server, the background worker and the scheduler together."
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")
        parser.add_argument("--no-worker", action="store_true", help="do not start db_worker")
        parser.add_argument("--no-scheduler", action="store_true",
                            help="do not start run_scheduler")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the commands that would run, and exit")

    def handle(self, *args, host: str, port: str, no_worker: bool, no_scheduler: bool,
               dry_run: bool, **options) -> None:
        services = plan_services(host=host, port=_port(str(port)), worker=not no_worker,
                                 scheduler=not no_scheduler)
        if dry_run:
            for service in services:
                self.stdout.write(f"{service.name}: {' '.join(service.argv)}")
            return
        self.stdout.write(f"CLM on http://{host}:{port}/ — Ctrl-C stops everything.")
        self.stdout.flush()
        status = Supervisor(services, self.stdout.write).run()
        if status:
            raise CommandError(f"a service stopped unexpectedly (status {status})",
                               returncode=status if status < 256 else 1)
