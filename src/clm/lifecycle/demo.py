"""Demo data hook: bulk-seeded events bypass the engine, so replay them once."""

from __future__ import annotations


def after_seed_demo(*, stdout) -> None:
    from django.core.management import call_command

    call_command("lifecycle_rebuild", stdout=stdout)
