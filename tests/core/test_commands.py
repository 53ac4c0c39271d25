"""ensure_demo_admin and run_services (argument handling only: no servers are started)."""

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
    assert web[3:] == ["runserver", "127.0.0.3:9000", "--noreload"]
    assert services[1].argv[3] == "db_worker" and "--no-reload" in services[1].argv
    assert services[2].argv[3:] == ["run_scheduler"]


def test_run_services_dry_run_prints_the_commands():
    out = run("run_services", "--host", "127.0.0.2", "--port", "8123", "--no-worker",
              "--dry-run")
    assert "web:" in out and "runserver 127.0.0.2:8123 --noreload" in out
    assert "worker:" not in out


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_run_services_refuses_a_bad_port(port):
    with pytest.raises(CommandError, match="--port"):
        run("run_services", "--port", port, "--dry-run")
