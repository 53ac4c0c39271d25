"""The lifecycle fold: a pure function from a contact's inputs (events, manual moves) to moves.

Both the incremental engine and `lifecycle_rebuild` run this same code, so they agree by
construction: the incremental engine continues the fold from the stored state when new
inputs sort after everything applied so far, and replays the contact from scratch otherwise.

Inputs sort by (time, rank, id): inactivity churn (rank 0, synthetic) before events (rank 1)
before manual moves (rank 2) at the same instant.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from clm.lifecycle.rules import CompiledRule

STAGE_CHANGED = "stage.changed"
INACTIVE_KIND = "lifecycle.inactive"
# Kinds the engine writes or synthesises itself: never fed back into the rules.
ENGINE_KINDS = frozenset({STAGE_CHANGED, INACTIVE_KIND})
# A purchase restarts the inactivity clock ("no purchase for N days → churned").
PURCHASE_KINDS = frozenset({"order.completed", "invoice.paid", "deal.won"})

RANK_TIME, RANK_EVENT, RANK_MANUAL = 0, 1, 2
Key = tuple[datetime, int, int]


@dataclass(slots=True)
class Input:
    """An event (rank 1) or a manual move (rank 2)."""

    at: datetime
    rank: int
    id: int
    kind: str = ""
    properties: dict | str = field(default_factory=dict)  # str: JSON not parsed yet
    # manual moves only
    to_stage: str = ""
    reason: str = ""
    actor_type: str = ""
    actor_id: int | None = None

    @property
    def key(self) -> Key:
        return (self.at, self.rank, self.id)


@dataclass(slots=True)
class Move:
    seq: int
    from_stage: str
    to_stage: str
    at: datetime
    life: int
    actor_type: str
    reason: str
    cause_event_id: int | None = None
    manual_move_id: int | None = None
    actor_id: int | None = None
    rule_id: int | None = None
    exited_at: datetime | None = None

    @property
    def origin(self) -> str:
        """What caused the move, unique per contact (names its stage.changed event)."""
        if self.cause_event_id is not None:
            return f"e{self.cause_event_id}"
        if self.manual_move_id is not None:
            return f"m{self.manual_move_id}"
        return f"t{self.at.isoformat()}"


@dataclass(slots=True)
class State:
    stage: str = ""
    life: int = 1
    entered_at: datetime | None = None
    seq: int = 0
    anchor_at: datetime | None = None
    hwm: Key | None = None


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

    def due_at(self, state: State) -> datetime | None:
        """When inactivity churn falls due for this state, if it can."""
        if self.inactivity and state.anchor_at is not None \
                and self.group.get(state.stage) == "customer":
            return state.anchor_at + self.churn_after
        return None

    def run(self, state: State, inputs: Iterable[Input], moves: list[Move],
            contact: dict | None = None, until: datetime | None = None) -> None:
        """Apply `inputs` (sorted, all after state.hwm) to `state`, appending to `moves`.

        `moves` may hold the contact's earlier moves (its last one gets exited_at). With
        `until`, inactivity churn due up to then is applied too.
        """
        contact_row = contact or {}

        def contact_view() -> dict:
            return {**contact_row, "stage": state.stage, "life": state.life}

        rules_for = self.rules.get
        for inp in inputs:
            due = self.due_at(state)
            if due is not None and due <= inp.at:
                self._inactive(state, due, moves, contact_view)
            if inp.rank == RANK_EVENT:
                kind = inp.kind
                if kind in PURCHASE_KINDS:
                    state.anchor_at = inp.at
                for rule in rules_for(kind, ()):
                    if not self._allowed(rule, state.stage):
                        continue
                    props = inp.properties
                    if props.__class__ is str:  # raw JSON from the rebuild's stream
                        props = inp.properties = json.loads(props) or {}
                    if rule.matches(props or {}, contact_view):
                        self._move(state, moves, rule.target, inp.at, actor_type="rule",
                                   reason=rule.name, rule_id=rule.id, cause_event_id=inp.id)
                        break
            elif inp.to_stage != state.stage and inp.to_stage in self.order:
                self._move(state, moves, inp.to_stage, inp.at, actor_type=inp.actor_type,
                           reason=inp.reason, manual_move_id=inp.id, actor_id=inp.actor_id)
            state.hwm = (inp.at, inp.rank, inp.id)
        if until is not None:
            due = self.due_at(state)
            if due is not None and due <= until:
                self._inactive(state, due, moves, contact_view)

    def _allowed(self, rule: CompiledRule, current: str) -> bool:
        if rule.target == current:
            return False
        if rule.is_loop or not rule.forward_only or not current:
            return True
        return self.order.get(rule.target, 0) > self.order.get(current, 0)

    def _inactive(self, state: State, due: datetime, moves: list[Move],
                  contact_view: Callable[[], dict]) -> None:
        for rule in self.inactivity:
            if self._allowed(rule, state.stage) and rule.matches({}, contact_view):
                self._move(state, moves, rule.target, due, actor_type="system",
                           reason=rule.name, rule_id=rule.id)
                state.hwm = (due, RANK_TIME, 0)
                return

    def _move(self, state: State, moves: list[Move], target: str, at: datetime, *,
              actor_type: str, reason: str, rule_id: int | None = None,
              cause_event_id: int | None = None, manual_move_id: int | None = None,
              actor_id: int | None = None) -> None:
        group = self.group
        if group.get(state.stage) == "lost" and group.get(target) == "customer":
            state.life += 1  # a win-back starts the next life
        if group.get(target) == "customer" and group.get(state.stage) != "customer":
            state.anchor_at = at
        if moves and moves[-1].exited_at is None:
            moves[-1].exited_at = at
        state.seq += 1
        moves.append(Move(seq=state.seq, from_stage=state.stage, to_stage=target, at=at,
                          life=state.life, actor_type=actor_type, reason=reason[:500],
                          cause_event_id=cause_event_id, manual_move_id=manual_move_id,
                          actor_id=actor_id, rule_id=rule_id))
        state.stage = target
        state.entered_at = at
