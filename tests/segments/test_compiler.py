"""The definition compiler: each condition type, and/or nesting, and strict validation.

Runs on whichever database the suite runs on (CI runs it on SQLite and PostgreSQL).
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from clm.core.errors import ValidationFailed
from clm.customers.models import Contact
from clm.segments.compiler import compile_definition, validate
from clm.segments.services import behaviour_windows_refresh
from tests.factories import ContactFactory
from tests.segments.conftest import add_events, add_score


def names(*conditions, op: str = "and", use_counters: bool = False) -> set[str]:
    q = compile_definition({"op": op, "conditions": list(conditions)},
                           use_counters=use_counters)
    return set(Contact.objects.filter(q).values_list("first_name", flat=True))


def prop(field, op, value=None):
    cond = {"type": "property", "field": field, "op": op}
    if value is not None:
        cond["value"] = value
    return cond


@pytest.mark.parametrize(("cond", "expected"), [
    (prop("country", "eq", "de"), {"Ann", "Cat"}),
    (prop("country", "ne", "DE"), {"Bob", "Dan"}),
    (prop("country", "in", ["FR", "DE"]), {"Ann", "Bob", "Cat"}),
    (prop("country", "not_in", ["FR"]), {"Ann", "Cat", "Dan"}),
    (prop("country", "is_set"), {"Ann", "Bob", "Cat"}),
    (prop("country", "is_not_set"), {"Dan"}),
    (prop("city", "contains", "ari"), {"Bob"}),
    (prop("region", "eq", "Berlin"), {"Ann"}),
    (prop("age_band", "in", ["25-34"]), {"Ann"}),
    (prop("income_band", "eq", "high"), {"Ann"}),
    (prop("tags", "eq", "Golf"), {"Ann"}),
    (prop("interests", "in", ["wine"]), {"Ann", "Bob"}),
    (prop("tags", "ne", "golf"), {"Bob", "Cat", "Dan"}),
    (prop("tags", "not_in", ["wine", "golf"]), {"Cat", "Dan"}),
    (prop("tags", "contains", "ol"), {"Ann"}),
    (prop("tags", "is_set"), {"Ann", "Bob"}),
    (prop("tags", "is_not_set"), {"Cat", "Dan"}),
    (prop("company.industry", "eq", "software"), {"Ann"}),
    (prop("company.industry", "ne", "software"), {"Bob", "Cat", "Dan"}),
    (prop("company.employee_band", "in", ["1-10", "11-50"]), {"Bob"}),
    (prop("company.revenue_band", "is_set"), {"Ann"}),
    (prop("company.revenue_band", "is_not_set"), {"Bob", "Cat", "Dan"}),
    (prop("company.country", "eq", "fr"), {"Bob"}),
    (prop("properties.plan", "eq", "pro"), {"Ann"}),
    (prop("properties.plan", "in", ["pro", "free"]), {"Ann", "Bob"}),
    (prop("properties.plan", "contains", "RE"), {"Bob"}),
    (prop("properties.seats", "gt", 5), {"Ann"}),
    (prop("properties.seats", "lte", 2), {"Bob"}),
    (prop("properties.vip", "eq", True), {"Ann"}),
    (prop("properties.plan", "is_set"), {"Ann", "Bob"}),
    (prop("properties.plan", "is_not_set"), {"Cat", "Dan"}),
    (prop("created_at", "gte", "2000-01-01"), {"Ann", "Bob", "Cat", "Dan"}),
    (prop("last_activity_at", "is_set"), set()),
    ({"type": "stage", "op": "in", "value": ["customer", "lead"]}, {"Ann", "Cat"}),
    ({"type": "stage", "op": "not_in", "value": ["customer"]}, {"Bob", "Cat", "Dan"}),
    ({"type": "event", "kind": "order.completed", "op": "did", "count": 2, "days": 365},
     {"Ann"}),
    ({"type": "event", "kind": "order.completed", "op": "did", "count": 3, "days": 365},
     {"Ann"}),
    ({"type": "event", "kind": "order.completed", "op": "did", "count": 4, "days": 365},
     set()),
    ({"type": "event", "kind": "order.completed", "op": "did", "days": 30}, {"Ann"}),
    ({"type": "event", "kind": "order.completed", "op": "did", "days": 500}, {"Ann", "Bob"}),
    ({"type": "event", "kind": "email.opened", "op": "did_not", "days": 30},
     {"Ann", "Cat", "Dan"}),
    ({"type": "no_purchase", "days": 30}, {"Bob", "Dan"}),
    ({"type": "no_purchase", "days": 365}, {"Bob", "Dan"}),
    ({"type": "no_purchase", "days": 3}, {"Ann", "Bob", "Cat", "Dan"}),
    ({"type": "rfm_segment", "op": "in", "value": ["champions", "new"]}, {"Ann", "Cat"}),
    ({"type": "rfm_segment", "op": "not_in", "value": ["champions"]}, {"Bob", "Cat", "Dan"}),
    ({"type": "clv_decile", "min": 6, "max": 10}, {"Ann", "Cat"}),
    ({"type": "clv_decile", "max": 5}, {"Bob"}),
    ({"type": "p_alive", "min": 0.5}, {"Ann", "Cat"}),
    ({"type": "p_alive", "min": 0.2, "max": 0.6}, {"Bob", "Cat"}),
    ({"type": "health", "min": 50, "max": 79}, {"Cat"}),
])
def test_each_condition(people, cond, expected):
    assert names(cond) == expected


def test_and_or_and_nesting(people):
    german = prop("country", "eq", "DE")
    buyer = {"type": "event", "kind": "order.completed", "op": "did", "days": 365}
    alive = {"type": "p_alive", "min": 0.5}
    assert names(german, buyer, alive) == {"Ann"}
    assert names(german, buyer, op="or") == {"Ann", "Cat"}
    # (German AND lead) OR (French AND not alive) OR nobody-with-score
    nested = [
        {"op": "and", "conditions": [german, {"type": "stage", "op": "in", "value": ["lead"]}]},
        {"op": "and", "conditions": [prop("country", "eq", "FR"),
                                     {"type": "p_alive", "max": 0.4}]},
        {"type": "group", "op": "and", "conditions": [
            {"op": "or", "conditions": [prop("country", "is_not_set")]}]},
    ]
    assert names(*nested, op="or") == {"Cat", "Bob", "Dan"}
    assert names(op="and") == {"Ann", "Bob", "Cat", "Dan"}
    assert names(op="or") == set()


def test_behaviour_counters_give_the_same_answer(people):
    conds = [
        {"type": "event", "kind": "order.completed", "op": "did", "count": 2, "days": 365},
        {"type": "event", "kind": "email.opened", "op": "did_not", "days": 30},
    ]
    behaviour_windows_refresh([("order.completed", 365), ("email.opened", 30)])
    for cond in conds:
        live, counted = names(cond), names(cond, use_counters=True)
        assert live == counted
    q = compile_definition({"op": "and", "conditions": conds})
    assert "behaviourcounter" in str(Contact.objects.filter(q).query).lower()


@pytest.mark.parametrize(("definition", "field"), [
    ([], None),
    ({"op": "xor", "conditions": []}, "op"),
    ({"op": "and"}, "conditions"),
    ({"op": "and", "conditions": [], "extra": 1}, "extra"),
    ({"op": "and", "conditions": [prop("country", "eq", "DE"), prop("country", "eq", "FR"),
                                  prop("country", "like", "x")]}, "conditions[2].op"),
    ({"op": "and", "conditions": [prop("shoe_size", "eq", "9")]}, "conditions[0].field"),
    ({"op": "and", "conditions": [prop("properties.nope", "eq", "9")]}, "conditions[0].field"),
    ({"op": "and", "conditions": [prop("country", "in", [])]}, "conditions[0].value"),
    ({"op": "and", "conditions": [prop("country", "in", ["DE", {"x": 1}])]},
     "conditions[0].value[1]"),
    ({"op": "and", "conditions": [prop("country", "eq")]}, "conditions[0].value"),
    ({"op": "and", "conditions": [prop("country", "gt", "A")]}, "conditions[0].op"),
    ({"op": "and", "conditions": [prop("created_at", "gt", "yesterday")]},
     "conditions[0].value"),
    ({"op": "and", "conditions": [prop("properties.seats", "gt", "many")]},
     "conditions[0].value"),
    ({"op": "and", "conditions": [{"type": "colour"}]}, "conditions[0].type"),
    ({"op": "and", "conditions": [{"type": "p_alive", "min": 2}]}, "conditions[0].min"),
    ({"op": "and", "conditions": [{"type": "p_alive"}]}, "conditions[0].min"),
    ({"op": "and", "conditions": [{"type": "clv_decile", "min": 8, "max": 3}]},
     "conditions[0].max"),
    ({"op": "and", "conditions": [{"type": "health", "min": 5, "colour": 1}]},
     "conditions[0].colour"),
    ({"op": "and", "conditions": [{"type": "rfm_segment", "op": "in", "value": ["vips"]}]},
     "conditions[0].value[0]"),
    ({"op": "and", "conditions": [{"type": "event", "kind": "DROP TABLE", "op": "did",
                                   "days": 3}]}, "conditions[0].kind"),
    ({"op": "and", "conditions": [{"type": "event", "kind": "x", "op": "did", "days": 0}]},
     "conditions[0].days"),
    ({"op": "and", "conditions": [{"type": "event", "kind": "x", "op": "did", "days": 3,
                                   "count": 0}]}, "conditions[0].count"),
    ({"op": "and", "conditions": [{"type": "event", "kind": "x", "op": "did_not", "days": 3,
                                   "count": 2}]}, "conditions[0].count"),
    ({"op": "and", "conditions": [{"type": "no_purchase"}]}, "conditions[0].days"),
    ({"op": "or", "conditions": [{"op": "and", "conditions": [
        prop("country", "eq", "DE"), {"type": "stage", "op": "in", "value": ["customer", True]}]}]},
     "conditions[0].conditions[1].value[1]"),
    ({"op": "and", "conditions": [{"op": "and", "conditions": [{"op": "and", "conditions": [
        {"op": "and", "conditions": [{"op": "and", "conditions": []}]}]}]}]},
     "conditions[0].conditions[0].conditions[0].conditions[0]"),
])
def test_validation_names_the_path(people, definition, field):
    with pytest.raises(ValidationFailed) as info:
        validate(definition)
    assert info.value.field == field
    assert info.value.status == 422


def test_too_many_conditions(db):
    definition = {"op": "or", "conditions": [prop("country", "eq", "DE")] * 51}
    with pytest.raises(ValidationFailed) as info:
        validate(definition)
    assert info.value.field == "conditions[50]"
    assert info.value.code == "too_many"


def test_unknown_stage_is_refused_when_stages_exist(db):
    from clm.lifecycle.models import Stage

    if not Stage.objects.exists():
        Stage.objects.create(key="lead", label="Lead", order=1, group="prospect")
    with pytest.raises(ValidationFailed) as info:
        validate({"op": "and", "conditions": [{"type": "stage", "op": "in",
                                               "value": ["lead", "wizard"]}]})
    assert info.value.field == "conditions[0].value[1]"


# --- counters with copies of country and scores ------------------------------------------

BENCH = [prop("country", "in", ["DE", "FR", "GB"]),
         {"type": "event", "kind": "order.completed", "op": "did", "count": 2, "days": 365},
         {"type": "p_alive", "min": 0.5}]


def sql_of(*conditions, op: str = "and") -> str:
    q = compile_definition({"op": op, "conditions": list(conditions)})
    return str(Contact.objects.filter(q).query).lower()


def test_and_group_folds_country_and_scores_into_the_counter_read(people):
    behaviour_windows_refresh([("order.completed", 365)])
    assert names(*BENCH, use_counters=True) == names(*BENCH) == {"Ann"}
    sql = sql_of(*BENCH)
    # One counter read carries all three tests; the score table is not joined.
    assert "analytics_contactscore" not in sql
    assert sql.count("segments_behaviourcounter") == 1 and "p_alive" in sql
    # In an OR group nothing is folded: each condition reads its own source.
    assert "analytics_contactscore" in sql_of(*BENCH, op="or")
    assert names(*BENCH, op="or", use_counters=True) == names(*BENCH, op="or")


def test_a_newer_score_refresh_makes_the_copies_stale(people):
    from clm.analytics.models import ContactScore, RefreshRun

    behaviour_windows_refresh([("order.completed", 365)])
    ContactScore.objects.filter(contact=people.ann).update(p_alive=0.2)
    # The copies say 0.9 until a refresh shows the scores changed since they were taken.
    assert names(*BENCH, use_counters=True) == {"Ann"}
    now = timezone.now()
    RefreshRun.objects.create(status=RefreshRun.Status.DONE, as_of=now.date(),
                              created_at=now, finished_at=now)
    assert names(*BENCH, use_counters=True) == names(*BENCH) == set()
    assert "analytics_contactscore" in sql_of(*BENCH)
    # The next counter refresh copies the new scores and reads them again.
    behaviour_windows_refresh([("order.completed", 365)])
    assert "analytics_contactscore" not in sql_of(*BENCH)
    assert names(*BENCH, use_counters=True) == set()


def test_country_copy_only_narrows(people):
    behaviour_windows_refresh([("order.completed", 365)])
    Contact.objects.filter(pk=people.ann.pk).update(country="US")
    # Moved out of the countries: left out at once (the contact's own country is tested).
    assert names(*BENCH, use_counters=True) == set()
    behaviour_windows_refresh([("order.completed", 365)])
    Contact.objects.filter(pk=people.ann.pk).update(country="DE")
    # Moved in: counted from the next refresh on, like a change of behaviour.
    assert names(*BENCH, use_counters=True) == set()
    behaviour_windows_refresh([("order.completed", 365)])
    assert names(*BENCH, use_counters=True) == {"Ann"}


def _random_population(rng) -> None:
    for i in range(80):
        contact = ContactFactory(first_name=f"R{i}",
                                 country=rng.choice(["DE", "FR", "GB", "US", ""]))
        for kind, most in (("order.completed", 5), ("page.viewed", 4)):
            days = [rng.randrange(0, 500) + 0.5 for _ in range(rng.randrange(0, most + 1))]
            if days:
                add_events(contact, kind, *days)
        if rng.random() < 0.7:
            add_score(contact,
                      p_alive=None if rng.random() < 0.1 else round(rng.random(), 2),
                      clv_decile=None if rng.random() < 0.2 else rng.randrange(1, 11),
                      nps=None if rng.random() < 0.2 else rng.randrange(0, 11))  # varies health


def _random_condition(rng, depth: int) -> dict:
    if depth < 3 and rng.random() < 0.3:
        return {"op": rng.choice(["and", "or"]),
                "conditions": [_random_condition(rng, depth + 1)
                               for _ in range(rng.randrange(1, 4))]}
    countries = rng.sample(["DE", "FR", "GB", "US", "NL"], rng.randrange(1, 4))
    kind, days = rng.choice([("order.completed", 365), ("order.completed", 30),
                             ("page.viewed", 90)])
    return rng.choice([
        prop("country", "in", countries),
        prop("country", "eq", countries[0]),
        prop("country", "not_in", countries),
        prop("country", "ne", countries[0]),
        {"type": "event", "kind": kind, "op": "did", "count": rng.randrange(1, 4),
         "days": days},
        {"type": "event", "kind": kind, "op": "did", "count": rng.randrange(1, 4),
         "days": days},
        {"type": "event", "kind": kind, "op": "did_not", "days": days},
        {"type": "p_alive", "min": round(rng.random(), 2)},
        {"type": "p_alive", "max": round(rng.random(), 2)},
        {"type": "clv_decile", "min": rng.randrange(1, 11)},
        {"type": "health", "min": 20, "max": rng.randrange(20, 101)},
    ])


def test_counters_agree_with_events_on_random_definitions(db):
    import random

    rng = random.Random(4)
    _random_population(rng)
    behaviour_windows_refresh([("order.completed", 365), ("order.completed", 30),
                               ("page.viewed", 90)])
    folded = 0
    for _ in range(120):
        definition = {"op": rng.choice(["and", "or"]),
                      "conditions": [_random_condition(rng, 1)
                                     for _ in range(rng.randrange(1, 5))]}
        live = set(Contact.objects.filter(compile_definition(definition, use_counters=False))
                   .values_list("pk", flat=True))
        q = compile_definition(definition)
        counted = set(Contact.objects.filter(q).values_list("pk", flat=True))
        assert counted == live, definition
        assert Contact.objects.filter(q).count() == len(live)
        sql = str(Contact.objects.filter(q).query)
        folded += "behaviourcounter" in sql and "country" in sql.split("behaviourcounter")[1]
    assert folded >= 5  # the random definitions exercised the folding
