"""`clm ensure_demo_admin`: the demo's administrator, created once with a random password.

The password is printed when the user is created and kept in <CLM_VAR_DIR>/demo_admin_password
(mode 0600), so later runs of `make run` can print it again. If someone changed the password
since, the stored one is stale: the command says so rather than resetting it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from clm.accounts.services import roles_sync, user_set_role

USERNAME = "admin"


def password_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_admin_password"


def _store(password: str) -> None:
    path = password_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(password + "\n")


class Command(BaseCommand):
    help = "Create the demo admin user (superuser, role admin) if missing and print its password."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=USERNAME)

    def handle(self, *args, username: str, **options) -> None:
        User = get_user_model()
        with transaction.atomic():
            user = User.objects.filter(username=username).first()
            if user is None:
                password = secrets.token_urlsafe(12)
                roles_sync()
                user = User.objects.create_superuser(username=username, password=password,
                                                     email=f"{username}@staff.example")
                user_set_role(user=user, role="admin")
                _store(password)
                self.stdout.write(f"Demo admin: {username} / {password}")
                return
        stored = password_file()
        if stored.exists() and user.check_password(stored.read_text().strip()):
            self.stdout.write(f"Demo admin exists: {username} / {stored.read_text().strip()}")
        else:
            self.stdout.write(f"Demo admin exists: {username} (password changed since it was "
                              f"generated; reset it with `clm changepassword {username}`)")
