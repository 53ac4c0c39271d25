from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender, **kwargs) -> None:
    # Permissions of every app exist only once the last app has migrated.
    if sender.name != "clm.web":
        return
    from clm.accounts.services import roles_sync

    roles_sync()


class AccountsConfig(AppConfig):
    name = "clm.accounts"
    label = "accounts"
    verbose_name = "Users, roles and API tokens"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles, dispatch_uid="clm.accounts.sync_roles")
