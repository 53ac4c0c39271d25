from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _analyze_new_indexes(sender, using="default", **kwargs) -> None:
    from clm.core.sqlite import analyze_new_indexes

    analyze_new_indexes(using)


class CoreConfig(AppConfig):
    name = "clm.core"
    label = "core"
    verbose_name = "CLM core"

    def ready(self) -> None:
        # Once per migrate run (post_migrate is sent per app; core's is enough).
        post_migrate.connect(_analyze_new_indexes, sender=self,
                             dispatch_uid="clm.core.analyze_new_indexes")
