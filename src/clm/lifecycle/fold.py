"""The lifecycle fold: a pure function from a contact's inputs (events, manual moves) to moves.

Both the incremental engine and `lifecycle_rebuild` run this same code, so they agree by
construction: the incremental engine continues the fold from the stored state when new
inputs sort after everything applied so far, and replays the contact from scratch otherwise.

Inputs are plain tuples (the rebuild makes millions of them), sorted by their first three
items (time, rank, id): inactivity churn (rank 0, synthetic) before events (rank 1) before
manual moves (rank 2) at the same instant.

    event:        (at, RANK_EVENT, event_id, kind, properties)
    manual move:  (at, RANK_MANUAL, move_id, to_stage, reason, actor_type, actor_id)

`properties` is a dict, its JSON text (parsed only if a rule's condition reads it), or None
when no rule of that kind reads properties. Times may be aware datetimes or naive UTC ones
(the SQLite rebuild reads naive ones), as long as one run does not mix them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from clm.lifecycle.rules import CompiledRule

STAGE_CHANGED = "stage.changed"
INACTIVE_KIND = "lifecycle.inactive"
# Kinds the engine writes or synthesises itself: never fed back into the rules.
ENGINE_KINDS = frozenset({STAGE_CHANGED, INACTIVE_KIND})
# A purchase restarts the inactivity clock ("no purchase for N days → churned").
PURCHASE_KINDS = frozenset({"order.completed", "invoice.paid", "deal.won"})

RANK_TIME, RANK_EVENT, RANK_MANUAL = 0, 1, 2
Key = tuple[datetime, int, int]
Input = tuple  # see the module docstring


_scan = json.JSONDecoder().scan_once
_decoded: dict[str, object] = {}


def decode(text: str):
    """json.loads(text), faster: the C scanner without the wrapper, and a small cache
    (many events share their properties text, e.g. one form's submissions). Callers never
    mutate the result."""
    value = _decoded.get(text)
    if value is None:
        try:
            value, end = _scan(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):  # leading/trailing whitespace, or not JSON: the full parser
            value = json.loads(text)
        if len(_decoded) >= 20000:
            _decoded.clear()
        _decoded[text] = value
    return value


def event_input(at: datetime, event_id: int, kind: str, properties=None) -> Input:
    return (at, RANK_EVENT, event_id, kind, properties)


def manual_input(at: datetime, move_id: int, to_stage: str, reason: str, actor_type: str,
                 actor_id: int | None) -> Input:
    return (at, RANK_MANUAL, move_id, to_stage, reason, actor_type, actor_id)


class Move:
    """One move the fold made; `exited_at` is set when the next move closes it.

    `advance_s` is filled by the writers (clm.lifecycle.marks), not by the fold.
    """

    __slots__ = (
        "actor_id",
        "actor_type",
        "advance_s",
        "at",
        "cause_event_id",
        "exited_at",
        "from_stage",
        "life",
        "manual_move_id",
        "reason",
        "rule_id",
        "seq",
        "to_stage",
    )

    def __init__(self, seq: int, from_stage: str, to_stage: str, at: datetime, life: int,
                 actor_type: str, reason: str, cause_event_id: int | None = None,
                 manual_move_id: int | None = None, actor_id: int | None = None,
                 rule_id: int | None = None, exited_at: datetime | None = None) -> None:
        self.seq = seq
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.at = at
        self.life = life
        self.actor_type = actor_type
        self.reason = reason
        self.cause_event_id = cause_event_id
        self.manual_move_id = manual_move_id
        self.actor_id = actor_id
        self.rule_id = rule_id
        self.exited_at = exited_at
        self.advance_s = None

    def __repr__(self) -> str:
        return f"Move({self.seq}, {self.from_stage!r} → {self.to_stage!r} at {self.at})"

    @property
    def origin(self) -> str:
        """What caused the move, unique per contact (names its stage.changed event)."""
        if self.cause_event_id is not None:
            return f"e{self.cause_event_id}"
        if self.manual_move_id is not None:
            return f"m{self.manual_move_id}"
        at = self.at if self.at.tzinfo is not None else self.at.replace(tzinfo=UTC)
        return f"t{at.isoformat()}"


class State:
    """Where a contact's fold stands: stage, life, inactivity anchor and high-water mark."""

    __slots__ = ("anchor_at", "entered_at", "hwm", "life", "seq", "stage")

    def __init__(self, stage: str = "", life: int = 1, entered_at: datetime | None = None,
                 seq: int = 0, anchor_at: datetime | None = None, hwm: Key | None = None) -> None:
        self.stage = stage
        self.life = life
        self.entered_at = entered_at
        self.seq = seq
        self.anchor_at = anchor_at
        self.hwm = hwm


class Fold:
    """Rules and stages loaded once; `run` folds one contact's inputs into its state."""

    def __init__(self, *, stages: dict[str, tuple[int, str]],
                 rules: dict[str, list[CompiledRule]], churn_after: timedelta) -> None:
        self.order = {key: order for key, (order, _group) in stages.items()}
        self.group = {key: group for key, (_order, group) in stages.items()}
        self.rules = rules
        self.inactivity = rules.get(INACTIVE_KIND, [])
        self.churn_after = churn_after
        self.relevant_kinds = (set(rules) | (set(PURCHASE_KINDS) if self.inactivity else set())) \
            - ENGINE_KINDS
        # Kinds whose rules read the event's properties (the others are read without them).
        self.property_kinds = {kind for kind, group in rules.items()
                               if any(rule.conditions for rule in group)} - ENGINE_KINDS
        # Per kind, what the hot loop needs of each rule, in priority order.
        self._plans = {
            kind: tuple((rule, rule.target, self.order.get(rule.target, 0),
                         rule.is_loop or not rule.forward_only, rule.predicate,
                         rule.contact_predicate, rule.contact_reads_row)
                        for rule in group)
            for kind, group in rules.items() if kind not in ENGINE_KINDS}

    def due_at(self, state: State) -> datetime | None:
        """When inactivity churn falls due for this state, if it can."""
        if self.inactivity and state.anchor_at is not None \
                and self.group.get(state.stage) == "customer":
            return state.anchor_at + self.churn_after
        return None

    def run(self, state: State, inputs, moves: list[Move],
            contact: dict | None = None, until: datetime | None = None) -> None:
        """Apply `inputs` (sorted, all after state.hwm) to `state`, appending to `moves`.

        `moves` may hold the contact's earlier moves (its last one gets exited_at). With
        `until`, inactivity churn due up to then is applied too.
        """
        # The state lives in locals during the loop (this is the engine's hot path).
        order_get, group_get = self.order.get, self.group.get
        plans_get = self._plans.get
        inactive = bool(self.inactivity)
        churn_after = self.churn_after
        stage, life, anchor = state.stage, state.life, state.anchor_at
        seq, entered, hwm = state.seq, state.entered_at, state.hwm
        row = contact or {}
        last = moves[-1] if moves and moves[-1].exited_at is None else None
        due = anchor + churn_after if inactive and anchor is not None \
            and group_get(stage) == "customer" else None

        last_input = None
        for inp in inputs:
            at = inp[0]
            if due is not None and due <= at:
                target, rule = self._inactive_target(stage, life, row)
                if rule is not None:
                    seq, life, anchor, last = self._move_to(
                        moves, last, seq, stage, life, anchor, target, due, "system", rule.name,
                        rule.id, None, None, None)
                    stage, entered, hwm = target, due, (due, RANK_TIME, 0)
                    due = anchor + churn_after if anchor is not None \
                        and group_get(stage) == "customer" else None
            rank = inp[1]
            if rank == RANK_EVENT:
                kind = inp[3]
                if kind in PURCHASE_KINDS:
                    anchor = at
                    if inactive and group_get(stage) == "customer":
                        due = at + churn_after
                plans = plans_get(kind)
                if plans:
                    props = inp[4]
                    current_order = order_get(stage, 0)
                    for rule, target, target_order, loops, pred, cpred, reads_row in plans:
                        if target == stage:
                            continue
                        if not loops and stage and target_order <= current_order:
                            continue
                        if pred is not None:
                            if props.__class__ is not dict:
                                props = decode(props) if props.__class__ is str else props
                                props = props or {}
                            if not pred(props):
                                continue
                        if cpred is not None and not cpred(
                                {**row, "stage": stage, "life": life} if reads_row
                                else {"stage": stage, "life": life}):
                            continue
                        seq, life, anchor, last = self._move_to(
                            moves, last, seq, stage, life, anchor, target, at, "rule",
                            rule.name, rule.id, inp[2], None, None)
                        stage, entered = target, at
                        due = anchor + churn_after if inactive and anchor is not None \
                            and group_get(stage) == "customer" else None
                        break
            else:
                target = inp[3]
                if target != stage and target in self.order:
                    seq, life, anchor, last = self._move_to(
                        moves, last, seq, stage, life, anchor, target, at, inp[5], inp[4],
                        None, None, inp[2], inp[6])
                    stage, entered = target, at
                    due = anchor + churn_after if inactive and anchor is not None \
                        and group_get(stage) == "customer" else None
            last_input = inp
        if last_input is not None:
            hwm = (last_input[0], last_input[1], last_input[2])
        if until is not None and due is not None and due <= until:
            target, rule = self._inactive_target(stage, life, row)
            if rule is not None:
                seq, life, anchor, last = self._move_to(
                    moves, last, seq, stage, life, anchor, target, due, "system", rule.name,
                    rule.id, None, None, None)
                stage, entered, hwm = target, due, (due, RANK_TIME, 0)
        state.stage, state.life, state.anchor_at = stage, life, anchor
        state.seq, state.entered_at, state.hwm = seq, entered, hwm

    def _inactive_target(self, stage: str, life: int, row: dict
                         ) -> tuple[str, CompiledRule | None]:
        """The inactivity rule that applies now, if any (tried in priority order)."""
        for rule in self.inactivity:
            if self.allowed(rule, stage) and rule.matches(
                    {}, lambda: {**row, "stage": stage, "life": life}):
                return rule.target, rule
        return "", None

    def allowed(self, rule: CompiledRule, current: str) -> bool:
        """May `rule` move a contact out of `current`? (never to the same stage; forward-only
        rules only to a later stage, except from no stage at all)."""
        if rule.target == current:
            return False
        if rule.is_loop or not rule.forward_only or not current:
            return True
        return self.order.get(rule.target, 0) > self.order.get(current, 0)

    def _move_to(self, moves: list[Move], last: Move | None, seq: int, stage: str, life: int,
                 anchor: datetime | None, target: str, at: datetime, actor_type: str,
                 reason: str, rule_id: int | None, cause_event_id: int | None,
                 manual_move_id: int | None, actor_id: int | None):
        """Record a move; returns the new (seq, life, anchor, last move)."""
        group_get = self.group.get
        from_group, to_group = group_get(stage), group_get(target)
        if to_group == "customer":
            if from_group == "lost":
                life += 1  # a win-back starts the next life
            if from_group != "customer":
                anchor = at
        if last is not None:
            last.exited_at = at
        seq += 1
        move = Move(seq, stage, target, at, life, actor_type, reason[:500], cause_event_id,
                    manual_move_id, actor_id, rule_id)
        moves.append(move)
        return seq, life, anchor, move
