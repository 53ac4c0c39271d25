"""The rebuild's fast paths give the same answers as the plain ones.

- compiled condition predicates == the generic `conditions_hold`, over random data;
- the fold's JSON decoding == json.loads; the stage.changed properties text == json.dumps;
- a rebuild repairs drifted rows (history, states, events, stages) and keeps equal rows as
  they are (same ids), whether few or most contacts of a range changed;
- the same holds when worker processes read, fold and compare (SQLite).
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from clm.core.errors import ValidationFailed
from clm.customers.models import Contact
from clm.lifecycle import engine, store
from clm.lifecycle import rebuild as rebuild_module
from clm.lifecycle.fold import Move, decode
from clm.lifecycle.models import ContactState, Rule, StageChange
from clm.lifecycle.rebuild import rebuild
from clm.lifecycle.rules import OPS, _compile, conditions_hold, predicate, validate_conditions
from clm.timeline.models import Event
from tests.factories import ContactFactory
from tests.lifecycle import test_equivalence
from tests.lifecycle.conftest import day, journey

scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.floats(-3, 12),
                   st.sampled_from(["", "a", "subscribe", "9", "10.0", "x.y", "3"]))
value_st = st.one_of(scalar, st.lists(scalar, max_size=3),
                     st.dictionaries(st.sampled_from(["a", "b"]), scalar, max_size=2))
field_st = st.sampled_from(["a", "b", "a.b", "a.0", "x.y", "c"])
condition_st = st.fixed_dictionaries({
    "field": field_st, "op": st.sampled_from(OPS),
    "value": st.one_of(scalar, st.lists(scalar, max_size=3))})
data_st = st.one_of(
    st.dictionaries(st.sampled_from(["a", "b", "c", "x.y", "x"]), value_st, max_size=4),
    st.lists(value_st, max_size=2), scalar)


@settings(max_examples=400, deadline=None)
@given(conditions=st.lists(condition_st, min_size=1, max_size=3), data=data_st)
def test_compiled_predicates_agree_with_the_generic_evaluation(conditions, data):
    try:
        conditions = validate_conditions(conditions, field_name="conditions")
    except ValidationFailed:
        assume(False)  # rules only ever hold valid conditions
    compiled = _compile(conditions)
    assert predicate(compiled)(data) == conditions_hold(compiled, data)


@pytest.mark.parametrize("text", ['{"form_type": "demo"}', ' {"a": 1} ', '{"a": [1, 2.5]}\n',
                                  "null", '"x"', "[]", '{"é": "\\u00e9"}'])
def test_decode_is_json_loads(text):
    assert decode(text) == json.loads(text)
    assert decode(text) == json.loads(text)  # from the cache


@pytest.mark.parametrize("reason", ["Subscribe form", 'He said "no" \\ twice', "Größe ✓", ""])
def test_stage_event_text_is_json_dumps(reason):
    dumps = store.PropertiesJSON()
    for move in (Move(1, "", "lead", day(0), 1, "rule", reason, cause_event_id=7, rule_id=3),
                 Move(2, "lead", "sql", day(1), 2, "user", reason, manual_move_id=9,
                      actor_id=4)):
        assert dumps(move) == json.dumps(store.event_properties(move))


@pytest.fixture
def histories(emit, admin_user):
    """Four contacts with some history, built by the incremental engine."""
    contacts = [ContactFactory() for _ in range(4)]
    for i, c in enumerate(contacts):
        emit(c, "form.submitted", 0, form_type="subscribe" if i % 2 else "demo")
        emit(c, "order.completed", 1 + i)
        emit(c, "subscription.canceled", 5 + i)
    return contacts


def _ids(contacts):
    return [c.pk for c in contacts]


@pytest.mark.django_db
def test_a_repeated_rebuild_keeps_every_row(histories):
    engine.rebuild_all()
    ids = _ids(histories)
    rows = (sorted(StageChange.objects.values_list("pk", flat=True)),
            sorted(Event.objects.filter(kind="stage.changed").values_list("pk", flat=True)))
    before = test_equivalence.snapshot(ids)
    engine.rebuild_all(chunk_contacts=3)
    assert test_equivalence.snapshot(ids) == before
    assert (sorted(StageChange.objects.values_list("pk", flat=True)),
            sorted(Event.objects.filter(kind="stage.changed").values_list("pk", flat=True))) \
        == rows


@pytest.mark.django_db
def test_rebuild_repairs_drifted_rows_and_keeps_the_rest(histories):
    ids = _ids(histories)
    expected = test_equivalence.snapshot(ids)
    a, b = histories[0], histories[1]
    untouched = list(StageChange.objects.filter(contact=histories[3]).values_list("pk", flat=True))
    StageChange.objects.filter(contact=a, seq=2).update(reason="edited by hand")
    ContactState.objects.filter(contact=b).delete()
    Event.objects.filter(contact=b, kind="stage.changed").update(properties={"to": "nowhere"})
    Event.objects.create(contact=a, kind="stage.changed", occurred_at=day(3), recorded_at=day(3),
                         source="lifecycle", properties={}, idempotency_key="stage.changed:x")
    Contact.objects.filter(pk=histories[2].pk).update(stage="promoter")
    engine.rebuild_all(chunk_contacts=2)
    assert test_equivalence.snapshot(ids) == expected
    assert list(StageChange.objects.filter(contact=histories[3])
                .values_list("pk", flat=True)) == untouched


@pytest.mark.django_db
def test_rebuild_updates_drifted_columns_in_place(histories):
    """Rows that differ only in some columns (advance_s after a ranking change) keep their ids."""
    ids = _ids(histories)
    expected = test_equivalence.snapshot(ids)
    assert StageChange.objects.exclude(advance_s=None).exists()
    kept = _stored_ids()
    StageChange.objects.update(advance_s=None)
    StageChange.objects.filter(contact=histories[1], seq=1).update(reason="edited", life=7)
    engine.rebuild_all(chunk_contacts=3)
    assert test_equivalence.snapshot(ids) == expected
    assert _stored_ids() == kept


@pytest.mark.django_db
def test_rebuild_applies_a_rule_change_to_the_past(histories):
    Rule.objects.filter(name="Subscription canceled").update(active=False)
    engine.rebuild_all()
    for c in histories:
        c.refresh_from_db()
        assert c.stage == "customer"
        assert journey(c)[-1] == (journey(c)[-1][0], "customer", 1)
        assert not Event.objects.filter(contact=c, kind="stage.changed",
                                        properties__to="churned").exists()


@pytest.mark.django_db
def test_rebuild_of_no_contacts_empties_the_history():
    engine.rebuild_all()
    assert not StageChange.objects.exists()


def _stored_ids() -> tuple[list[int], list[int]]:
    return (sorted(StageChange.objects.values_list("pk", flat=True)),
            sorted(Event.objects.filter(kind="stage.changed").values_list("pk", flat=True)))


@pytest.mark.skipif(connection.vendor != "sqlite", reason="worker processes run on SQLite only")
@pytest.mark.django_db(transaction=True)
def test_rebuild_in_worker_processes_gives_the_same_rows(reference_data, histories, monkeypatch):
    """Plans made in forked workers and written here: keep, repair, and build from nothing."""
    ids = _ids(histories)
    expected = test_equivalence.snapshot(ids)  # as the incremental engine left it
    kept = _stored_ids()
    # The test database lives in memory (closing our connection keeps it): a forked worker
    # reads its copy, which holds what was committed before the rebuild began, as a worker
    # would read it from a database file.
    monkeypatch.setattr(rebuild_module, "_workers_see_our_data", lambda: True)

    def run(chunk: int) -> None:
        stats = rebuild(engine.load_fold(), chunk_contacts=chunk, workers=2)
        assert stats.extra["workers"] == 2  # the worker path ran
        assert stats.contacts == len(ids)
        assert test_equivalence.snapshot(ids) == expected

    run(1)  # nothing changed: every row kept
    assert _stored_ids() == kept
    a, b = histories[0], histories[1]
    StageChange.objects.filter(contact=a, seq=2).update(reason="edited by hand")
    ContactState.objects.filter(contact=b).delete()
    Event.objects.filter(contact=b, kind="stage.changed").update(properties={"to": "nowhere"})
    Contact.objects.filter(pk=histories[2].pk).update(stage="promoter")
    run(2)  # drifted rows repaired
    StageChange.objects.all().delete()
    ContactState.objects.all().delete()
    Event.objects.filter(kind="stage.changed").delete()
    Contact.objects.update(stage="")
    run(3)  # from nothing
