"""The assistant's state machine: every table entry, every pair outside it, and the
sequences that leave other assistants stuck."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from voiced.pipeline.state import TRANSITIONS, State, StateMachine, Trigger

S, T = State, Trigger

EXPECTED: dict[tuple[State, Trigger], State] = {
    (S.IDLE, T.WAKE): S.LISTENING,
    (S.IDLE, T.SAY): S.THINKING,
    (S.IDLE, T.MUTE): S.MUTED,
    (S.LISTENING, T.SPEECH_END): S.THINKING,
    (S.LISTENING, T.NO_SPEECH): S.IDLE,
    (S.LISTENING, T.CANCEL): S.IDLE,
    (S.LISTENING, T.MUTE): S.MUTED,
    (S.LISTENING, T.SAY): S.THINKING,
    (S.LISTENING, T.WAKE): S.LISTENING,
    (S.THINKING, T.FIRST_AUDIO): S.SPEAKING,
    (S.THINKING, T.REPLY_DONE): S.IDLE,
    (S.THINKING, T.FOLLOW_UP): S.LISTENING,
    (S.THINKING, T.BARGE_IN): S.LISTENING,
    (S.THINKING, T.CANCEL): S.IDLE,
    (S.THINKING, T.MUTE): S.MUTED,
    (S.SPEAKING, T.REPLY_DONE): S.IDLE,
    (S.SPEAKING, T.FOLLOW_UP): S.LISTENING,
    (S.SPEAKING, T.BARGE_IN): S.LISTENING,
    (S.SPEAKING, T.CANCEL): S.IDLE,
    (S.SPEAKING, T.MUTE): S.MUTED,
    (S.MUTED, T.UNMUTE): S.IDLE,
    (S.MUTED, T.MUTE): S.MUTED,
}
"""The intended behaviour, written out independently of the code's table."""

ALL_PAIRS = list(itertools.product(State, Trigger))
UNLISTED = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


def machine_in(state: State) -> StateMachine:
    machine = StateMachine()
    machine.state = state
    return machine


def run(*triggers: Trigger) -> tuple[StateMachine, list[bool]]:
    machine = StateMachine()
    return machine, [machine.fire(trigger) for trigger in triggers]


def test_table_is_the_intended_one() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize(("state", "trigger"), list(TRANSITIONS), ids=lambda v: str(v))
def test_every_listed_transition(state: State, trigger: Trigger) -> None:
    machine = machine_in(state)
    target = TRANSITIONS[(state, trigger)]
    changed = machine.fire(trigger)
    assert machine.state is target
    assert changed is (target is not state)


@pytest.mark.parametrize(("state", "trigger"), UNLISTED, ids=lambda v: str(v))
def test_every_unlisted_pair_changes_nothing(state: State, trigger: Trigger) -> None:
    machine = machine_in(state)
    assert machine.fire(trigger) is False
    assert machine.state is state


def test_the_tables_cover_every_pair() -> None:
    assert len(TRANSITIONS) + len(UNLISTED) == len(State) * len(Trigger)
    assert UNLISTED, "some pairs are deliberately ignored"


def test_starts_idle() -> None:
    assert StateMachine().state is State.IDLE


def test_mute_while_speaking_then_unmute_is_idle() -> None:
    machine, changed = run(T.WAKE, T.SPEECH_END, T.FIRST_AUDIO, T.MUTE, T.UNMUTE)
    assert machine.state is S.IDLE
    assert changed == [True] * 5


def test_muted_ignores_everything_but_unmute() -> None:
    machine, _ = run(T.MUTE)
    for trigger in Trigger:
        if trigger is not T.UNMUTE:
            assert machine.fire(trigger) is False, trigger
            assert machine.state is S.MUTED
    assert machine.fire(T.UNMUTE)
    assert machine.fire(T.WAKE), "the first wake after unmute is heard"
    assert machine.state is S.LISTENING


def test_wake_then_no_speech_is_idle_and_wakes_again() -> None:
    machine, changed = run(T.WAKE, T.NO_SPEECH, T.WAKE)
    assert changed == [True, True, True]
    assert machine.state is S.LISTENING


def test_barge_in_from_speaking_runs_a_whole_new_turn() -> None:
    machine, _ = run(T.WAKE, T.SPEECH_END, T.FIRST_AUDIO)
    states = []
    for trigger in (T.BARGE_IN, T.SPEECH_END, T.FIRST_AUDIO, T.REPLY_DONE):
        assert machine.fire(trigger), trigger
        states.append(machine.state)
    assert states == [S.LISTENING, S.THINKING, S.SPEAKING, S.IDLE]


def test_second_turn_after_the_first_reply() -> None:
    """The "stuck after the first wake" report: two full turns in a row."""
    turn = (T.WAKE, T.SPEECH_END, T.FIRST_AUDIO, T.REPLY_DONE)
    machine, changed = run(*turn, *turn)
    assert changed == [True] * 8
    assert machine.state is S.IDLE


def test_late_events_of_a_cancelled_turn_are_ignored() -> None:
    machine, _ = run(T.WAKE, T.SPEECH_END, T.CANCEL)
    assert machine.state is S.IDLE
    for late in (T.FIRST_AUDIO, T.REPLY_DONE, T.SPEECH_END, T.BARGE_IN, T.FOLLOW_UP):
        assert machine.fire(late) is False
        assert machine.state is S.IDLE


def _reachable(start: State, edges: dict[State, set[State]]) -> set[State]:
    seen, queue = {start}, deque([start])
    while queue:
        for nxt in edges[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


def _edges(reverse: bool) -> dict[State, set[State]]:
    """State graph found by firing every trigger in every state (not read from the table)."""
    edges: dict[State, set[State]] = {state: set() for state in State}
    for state, trigger in ALL_PAIRS:
        machine = machine_in(state)
        machine.fire(trigger)
        src, dst = (machine.state, state) if reverse else (state, machine.state)
        edges[src].add(dst)
    return edges


def test_every_state_is_reachable_from_idle() -> None:
    assert _reachable(S.IDLE, _edges(reverse=False)) == set(State)


def test_idle_is_reachable_from_every_state() -> None:
    assert _reachable(S.IDLE, _edges(reverse=True)) == set(State)
