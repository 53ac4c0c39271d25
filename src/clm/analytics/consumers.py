"""Entry point of this app for committed timeline events."""

from __future__ import annotations

from django.db import transaction

from clm.analytics import summary
from clm.analytics.services import (
    ORDER_COMPLETED,
    purchase_summaries_update,
    transactions_from_events,
)
from clm.timeline.models import Event

# A merge moves the losers' purchases to the survivor (customers.merging moves every row
# that points at a contact), which the survivor's purchase summary must then include.
MERGED = "contact.merged"


def on_events_committed(event_ids: list[int]) -> None:
    """Record the purchases of committed `order.completed` events (idempotent, in bulk), the
    months in which contacts were active, and recompute the purchase summary and active
    months of contacts that absorbed others in a merge.
    """
    # By primary key only, kind checked here: with `kind IN` in SQL, SQLite may walk the kind
    # index over every order ever placed instead of looking up these ids.
    wanted = {ORDER_COMPLETED, MERGED}
    rows = [row for row in Event.objects.filter(pk__in=event_ids)
            .values_list("pk", "kind", "contact_id") if row[1] in wanted]
    orders = [pk for pk, kind, _ in rows if kind == ORDER_COMPLETED]
    if orders:
        transactions_from_events(orders)
    merged = {contact_id for _, kind, contact_id in rows if kind == MERGED}
    with transaction.atomic():
        summary.activity_months_add(event_ids)
        if merged:
            purchase_summaries_update(contact_ids=merged)
            summary.activity_months_update(merged)
