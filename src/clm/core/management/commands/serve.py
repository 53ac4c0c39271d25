"""`clm serve [--host H] [--port P] [--threads N] [--workers N]`: CLM's web server.

Gunicorn with its threaded worker: a pool of threads that live as long as the worker, so each
keeps its database connection between requests (CONN_MAX_AGE). Django's runserver starts a
thread, and so a new connection, for every request; on the embedded SQLite database a new
connection begins with an empty page cache, runs its PRAGMAs, and may checkpoint the WAL
when it closes: tens of milliseconds a page at a million contacts. Static files are served
by WhiteNoise (settings), as in production. On SQLite each worker process also runs a
clm.core.sqlite.WalRestarter, so the WAL does not grow without end while its threads write.

`make run` serves with this (through run_services); production may run the same command or
gunicorn itself (docs/operations.md).
"""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

DEFAULT_THREADS = 8


def _positive(name: str, value: str | int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CommandError(f"--{name} must be a whole number, not '{value}'.") from None
    if number < 1:
        raise CommandError(f"--{name} must be at least 1, not {number}.")
    return number


def start_wal_restarter(worker=None) -> None:
    """gunicorn's post_worker_init hook: keep the SQLite WAL from growing under load."""
    from clm.core.sqlite import WalRestarter

    restarter = WalRestarter.for_database()
    if restarter is not None:
        restarter.start()


def gunicorn_options(*, host: str, port: int, threads: int, workers: int,
                     access_log: bool) -> dict:
    """The gunicorn settings `serve` runs with."""
    return {
        "bind": f"{host}:{port}",
        "worker_class": "gthread",
        "workers": workers,
        "threads": threads,
        # A thread waits this long for the next request on a kept-alive connection.
        "keepalive": 5,
        # gthread's main loop keeps heart-beating while threads work: a long export or
        # import request is not killed; this bounds a worker that stops responding.
        "timeout": 120,
        "graceful_timeout": 10,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "proc_name": "clm-web",
        # gunicorn's runtime control socket defaults to one path per user ($HOME/.gunicorn):
        # a second server (tests, a second instance) would take over the first one's.
        "control_socket_disable": True,
        "post_worker_init": start_wal_restarter,
    }


class Command(BaseCommand):
    help = "Serve CLM over HTTP with gunicorn (threaded worker, connections kept per thread)."
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")
        parser.add_argument("--threads", default=os.environ.get("CLM_WEB_THREADS",
                                                                str(DEFAULT_THREADS)),
                            help=f"threads per worker (CLM_WEB_THREADS, {DEFAULT_THREADS})")
        parser.add_argument("--workers", default=os.environ.get("CLM_WEB_WORKERS", "1"),
                            help="worker processes (CLM_WEB_WORKERS, 1)")
        parser.add_argument("--no-access-log", action="store_true",
                            help="do not print a line per request")

    def handle(self, *args, host: str, port: str, threads: str, workers: str,
               no_access_log: bool, **options) -> None:
        from gunicorn.app.base import BaseApplication

        port_number = _positive("port", port)
        if port_number > 65535:
            raise CommandError(f"--port must be between 1 and 65535, not {port_number}.")
        settings = gunicorn_options(host=host, port=port_number,
                                    threads=_positive("threads", threads),
                                    workers=_positive("workers", workers),
                                    access_log=not no_access_log)

        # Workers are forked from this process: no connection of ours may cross the fork.
        connections.close_all()

        class Application(BaseApplication):
            def load_config(self) -> None:
                for key, value in settings.items():
                    self.cfg.set(key, value)

            def load(self):
                from clm.wsgi import application

                return application

        Application().run()
