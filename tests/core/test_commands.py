"""ensure_demo_admin, run_services (argument handling only) and serve (a real server)."""

from __future__ import annotations

import stat
import sys
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from clm.core.management.commands.run_services import plan_services


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.mark.django_db
def test_ensure_demo_admin_creates_once_and_prints_the_same_password(var_dir):
    first = run("ensure_demo_admin")
    assert first.startswith("Demo admin: admin / ")
    password = first.strip().rsplit(" ", 1)[-1]
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    assert list(admin.groups.values_list("name", flat=True)) == ["admin"]
    stored = var_dir / "demo_admin_password"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600

    second = run("ensure_demo_admin")
    assert "exists" in second and password in second
    assert get_user_model().objects.filter(username="admin").count() == 1


@pytest.mark.django_db
def test_ensure_demo_admin_does_not_print_a_stale_password(var_dir):
    run("ensure_demo_admin")
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed-by-the-owner-1")
    admin.save()
    out = run("ensure_demo_admin")
    assert "password changed" in out
    assert (var_dir / "demo_admin_password").read_text().strip() not in out


def test_run_services_plans_web_and_worker_and_the_scheduler_when_present():
    names = [s.name for s in plan_services(host="127.0.0.3", port=9000, commands={})]
    assert names == ["web", "worker"]
    services = plan_services(host="127.0.0.3", port=9000, commands={"run_scheduler": "clm.x"})
    assert [s.name for s in services] == ["web", "worker", "scheduler"]
    web = services[0].argv
    assert web[:3] == [sys.executable, "-m", "clm"]
    assert web[3:] == ["serve", "--host", "127.0.0.3", "--port", "9000"]
    assert services[1].argv[3] == "db_worker" and "--no-reload" in services[1].argv
    assert services[2].argv[3:] == ["run_scheduler"]


def test_run_services_dry_run_prints_the_commands():
    out = run("run_services", "--host", "127.0.0.2", "--port", "8123", "--no-worker",
              "--dry-run")
    assert "web:" in out and "serve --host 127.0.0.2 --port 8123" in out
    assert "worker:" not in out


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_run_services_refuses_a_bad_port(port):
    with pytest.raises(CommandError, match="--port"):
        run("run_services", "--port", port, "--dry-run")


@pytest.mark.parametrize("args", [["--port", "0"], ["--threads", "none"], ["--workers", "0"]])
def test_serve_refuses_bad_numbers(args):
    with pytest.raises(CommandError, match=args[0]):
        run("serve", *args)


def test_serve_answers_pages_and_static_files_and_stops_on_sigterm(tmp_path):
    """`clm serve` as run_services starts it: a real gunicorn on a free port."""
    import os
    import signal
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(CLM_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="clm.settings", DEBUG="0")
    web, = plan_services(host="127.0.0.1", port=port, worker=False, scheduler=False)
    proc = subprocess.Popen([*web.argv, "--no-access-log"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
                    assert r.status == 200 and b'"ok"' in r.read()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "clm serve did not answer in 60 s"
                time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/static/web/clm.css", timeout=5) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/css")
        with urllib.request.urlopen(f"{base}/accounts/login/", timeout=5) as r:
            assert r.status == 200 and b"<form" in r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
