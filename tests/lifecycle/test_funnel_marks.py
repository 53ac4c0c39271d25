"""The funnel's fast paths (advance_s, the by-source rollup) give exactly what a plain reading of
the definition gives, on random histories; and they stay exact when stages are reordered.

The reference below is the definition written out in Python over every history row. The
funnel's three ways of counting — advance_s over the funnel index, the per-entry probe of later
rows (the query the report used before advance_s, still its fallback), and the rollup — must
all equal it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clm.customers.models import Contact
from clm.lifecycle import marks, reports, rollup, services
from clm.lifecycle.models import ReportState, Stage, StageChange
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

BASE = datetime(2025, 1, 1, tzinfo=UTC)
STAGES = ["subscriber", "lead", "mql", "sql", "opportunity", "customer", "promoter", "churned",
          "disqualified", "legacy"]  # "legacy": a key no Stage row has any more
LOST = {"churned", "disqualified"}
CUSTOMER = {"customer", "promoter"}
SOURCES = ["web", "ads", ""]


def reference(*, start: date, end: date, window_days: int, by: str = "cohort",
              source: str | None = None, visible: set[int] | None = None
              ) -> dict[tuple[str, str], tuple[int, int]]:
    """{(entry stage, group key): (entered, converted)} straight from the definition."""
    fstages = reports.funnel_stages(reports.stage_infos())
    ranks = {s.key: i + 1 for i, s in enumerate(fstages)}
    entry = {s.key for s in fstages[:-1]}
    lo, hi = reports.period_bounds(start, end)
    window = timedelta(days=window_days)
    sources = dict(Contact.objects.values_list("pk", "source"))
    history: dict[int, list[tuple]] = defaultdict(list)
    for cid, seq, stage, at, life in StageChange.objects.order_by("contact_id", "seq") \
            .values_list("contact_id", "seq", "to_stage", "at", "life"):
        history[cid].append((seq, stage, at, life))
    out: Counter = Counter()
    for cid, rows in history.items():
        if (visible is not None and cid not in visible) or \
                (source is not None and sources[cid] != source):
            continue
        for i, (_seq, stage, at, life) in enumerate(rows):
            if stage not in entry or not lo <= at < hi:
                continue
            key = f"{at:%Y-%m}" if by == "cohort" else (sources[cid] or reports.NO_SOURCE)
            converted = any(b_life == life and ranks.get(b_stage, 0) > ranks[stage]
                            and b_at <= at + window for _s, b_stage, b_at, b_life in rows[i + 1:])
            out[(stage, key, "n")] += 1
            out[(stage, key, "c")] += converted
    return {(stage, key): (out[(stage, key, "n")], out[(stage, key, "c")])
            for stage, key, kind in out if kind == "n"}


def figures(report) -> dict[tuple[str, str], tuple[int, int]]:
    return {(s.from_stage, g.key): (s.entered, s.converted)
            for g in report.groups for s in g.steps if s.entered}


def write(histories: list[tuple[str, list[tuple[str, int]]]], owner=None) -> list[int]:
    """Contacts with the given (source, [(stage, seconds after the previous move)]) histories,
    written as the engine writes them (life + 1 on a win-back, exited_at, advance_s)."""
    ids = []
    rows = []
    for i, (source, moves) in enumerate(histories):
        contact = ContactFactory(source=source, owner=owner if i % 2 == 0 else None)
        ids.append(contact.pk)
        at, life, prev, mine = BASE, 1, "", []
        for stage, gap in moves:
            if stage == prev:
                continue
            at += timedelta(seconds=gap)
            if prev in LOST and stage in CUSTOMER:
                life += 1
            if mine:
                mine[-1].exited_at = at
            mine.append(StageChange(contact=contact, seq=len(mine) + 1, from_stage=prev,
                                    to_stage=stage, at=at, actor_type="rule", life=life))
            prev = stage
        rows += mine
    StageChange.objects.bulk_create(rows)
    marks.recompute(contact_ids=ids)
    return ids


GAP = st.one_of(st.just(0), st.integers(1, 3600), st.integers(1, 60).map(lambda d: d * 86400),
                st.integers(1, 100 * 86400))
history_st = st.tuples(st.sampled_from(SOURCES),
                       st.lists(st.tuples(st.sampled_from(STAGES), GAP), max_size=8))


def _clear() -> None:
    StageChange.objects.all().delete()
    ReportState.objects.filter(name=rollup.ROLLUP).delete()


@settings(deadline=None, max_examples=40,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(histories=st.lists(history_st, min_size=1, max_size=8),
       start_day=st.integers(0, 300), days=st.integers(1, 400), window=st.integers(1, 200),
       data=st.data())
def test_every_way_of_counting_equals_the_definition(histories, start_day, days, window, data,
                                                      sales_user):
    _clear()
    ids = write(histories, owner=sales_user)
    start = BASE.date() + timedelta(days=start_day)
    end = start + timedelta(days=days - 1)
    source = data.draw(st.sampled_from([None, *SOURCES]), label="source filter")
    period = {"start": start, "end": end, "window_days": window}
    for by in ("cohort", "source"):
        want = reference(by=by, source=source, **period)
        assert figures(reports.funnel(by=by, source=source, **period)) == want
        mine = set(Contact.objects.filter(pk__in=ids, owner=sales_user).values_list("pk", flat=True))
        assert figures(reports.funnel(by=by, source=source, user=sales_user, **period)) == \
            reference(by=by, source=source, visible=mine, **period)
    # The rollup, for the by-source view of every contact.
    services.funnel_rollup_refresh()
    report = reports.funnel(by="source", **period)
    assert report.as_of is not None
    assert figures(report) == reference(by="source", **period)
    # The probe, as while advance_s is recomputed.
    ReportState.objects.filter(name=marks.ADVANCE).update(ranking="stale")
    for by in ("cohort", "source"):
        report = reports.funnel(by=by, source=source, **period)
        assert report.as_of is None
        assert figures(report) == reference(by=by, source=source, **period)
    services.funnel_marks_recompute()


def test_advance_is_seconds_rounded_up_and_exact_at_the_window_edge(db):
    [cid] = write([("web", [("lead", 0), ("mql", 10 * 86400)])])
    StageChange.objects.filter(contact_id=cid, seq=2).update(
        at=BASE + timedelta(days=10, microseconds=1))
    marks.recompute(contact_ids=[cid])
    lead = StageChange.objects.get(contact_id=cid, seq=1)
    assert lead.advance_s == 10 * 86400 + 1  # 1 µs over 10 days rounds up to the next second
    period = {"start": BASE.date(), "end": BASE.date()}
    assert figures(reports.funnel(window_days=10, **period)) == {("lead", "2025-01"): (1, 0)}
    assert figures(reports.funnel(window_days=11, **period)) == {("lead", "2025-01"): (1, 1)}


def test_no_rise_in_the_same_life_leaves_advance_empty(db):
    [cid] = write([("web", [("customer", 0), ("churned", 86400), ("customer", 86400),
                            ("promoter", 86400)])])
    by_seq = dict(StageChange.objects.filter(contact_id=cid).values_list("seq", "advance_s"))
    # customer (life 1) never rose in life 1; churned is no funnel stage; customer (life 2)
    # rose to promoter a day later; promoter is the top.
    assert by_seq == {1: None, 2: None, 3: 86400, 4: None}


def test_reordering_stages_recomputes_and_the_funnel_stays_exact(
        db, django_capture_on_commit_callbacks):
    write([("web", [("lead", 0), ("sql", 86400), ("mql", 86400)])])
    period = {"start": BASE.date(), "end": BASE.date() + timedelta(days=5), "window_days": 30}
    assert figures(reports.funnel(**period)) == reference(**period)
    services.funnel_rollup_refresh()
    # sql before mql now: lead → sql still rises, sql → mql now rises too.
    with django_capture_on_commit_callbacks(execute=True):
        services.stage_update(stage=Stage.objects.get(key="sql"), data={"order": 25})
    assert marks.is_current(marks.current_ranking(), marks.states())  # the task ran
    assert figures(reports.funnel(**period)) == reference(**period)
    assert reference(**period)[("sql", "2025-01")] == (1, 1)
    by_source = reports.funnel(by="source", **period)
    assert by_source.as_of is None  # the rollup is by the old order: read live
    assert figures(by_source) == reference(by="source", **period)


def test_an_edit_outside_the_services_falls_back_to_the_exact_probe(db):
    write([("web", [("lead", 0), ("sql", 86400), ("mql", 86400)])])
    Stage.objects.filter(key="sql").update(order=25)  # as the Django admin's list edit does
    period = {"start": BASE.date(), "end": BASE.date() + timedelta(days=5), "window_days": 30}
    assert not marks.is_current(marks.current_ranking(), marks.states())
    assert figures(reports.funnel(**period)) == reference(**period)
    assert services.funnel_rollup_refresh()  # the scheduled job recomputes advance_s first
    assert marks.is_current(marks.current_ranking(), marks.states())
    assert figures(reports.funnel(by="source", **period)) == reference(by="source", **period)


def test_rollup_says_how_old_it_is_and_ignores_later_history(db):
    write([("web", [("lead", 0), ("mql", 3600)])])
    services.funnel_rollup_refresh()
    period = {"start": BASE.date(), "end": BASE.date() + timedelta(days=5), "window_days": 30}
    as_of = ReportState.objects.get(name=rollup.ROLLUP).refreshed_at
    write([("ads", [("lead", 0)])])
    report = reports.funnel(by="source", **period)
    assert report.as_of == as_of
    assert figures(report) == {("lead", "web"): (1, 1), ("mql", "web"): (1, 0)}  # not ads yet
    assert figures(reports.funnel(by="cohort", **period)) == {("lead", "2025-01"): (2, 1),
                                                              ("mql", "2025-01"): (1, 0)}


def test_migration_fills_advance_like_the_writers(db):
    write([("web", [("lead", 0), ("churned", 5), ("customer", 7), ("promoter", 11)]),
           ("", [("subscriber", 0), ("mql", 3), ("lead", 2), ("sql", 9)])])
    want = list(StageChange.objects.order_by("pk").values_list("advance_s", flat=True))
    StageChange.objects.update(advance_s=None)
    ReportState.objects.all().delete()
    migration = import_module("clm.lifecycle.migrations.0005_funnel_marks")

    class Editor:
        pass

    editor = Editor()
    editor.connection = connection
    migration.fill_advance(django_apps, editor)
    assert list(StageChange.objects.order_by("pk").values_list("advance_s", flat=True)) == want
    assert marks.is_current(marks.current_ranking(), marks.states())
