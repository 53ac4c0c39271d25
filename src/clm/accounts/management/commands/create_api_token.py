from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from clm.accounts.models import TokenScope
from clm.accounts.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--scope", choices=TokenScope.values, default=TokenScope.READ_WRITE)

    def handle(self, *args, username, name, scope, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named '{username}'.")
        _, raw = api_token_create(user=user, name=name, scope=scope)
        self.stdout.write(raw)
