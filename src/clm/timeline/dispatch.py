"""After-commit hand-off of new events to the consumers named in CLM_EVENT_CONSUMERS.

Explicit and ordered, instead of signal chains: each consumer is a function taking a list
of event ids, called once the transaction that wrote them has committed (never after a
rollback). Bulk writers pass all their ids in one call.
"""

from __future__ import annotations

from functools import cache, partial

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string


@cache
def _consumers() -> list:
    return [import_string(path) for path in settings.CLM_EVENT_CONSUMERS]


def on_commit(event_ids: list[int]) -> None:
    if event_ids:
        transaction.on_commit(partial(deliver, list(event_ids)))


def deliver(event_ids: list[int]) -> None:
    for consumer in _consumers():
        consumer(event_ids)


def reset_consumers_cache() -> None:
    _consumers.cache_clear()
