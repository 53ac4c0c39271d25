"""Demo data hook: turn the seeded `order.completed` events into purchases, then refresh."""

from __future__ import annotations

from clm.timeline.models import Event

CHUNK = 20000


def after_seed_demo(*, stdout) -> None:
    from clm.analytics.services import refresh_now, transactions_from_events

    ids = Event.objects.filter(kind="order.completed").order_by("pk").values_list("pk", flat=True)
    added, batch = 0, []
    for event_id in ids.iterator(chunk_size=CHUNK):
        batch.append(event_id)
        if len(batch) == CHUNK:
            added += transactions_from_events(batch)
            batch = []
    added += transactions_from_events(batch)
    stdout.write(f"Purchases from demo orders: {added}")
    run = refresh_now()
    stdout.write(f"Analytics refreshed as of {run.as_of}: {run.status}")
