"""Taking and releasing slots on the admission ConfigMap's data (pure functions)."""

from __future__ import annotations

import json

import pytest

from functions.configure import admission, environment


def holding(*names: str, waiting: tuple[str, ...] = ()) -> dict:
    return admission._with(admission.empty("default"), list(names), list(waiting))  # noqa: SLF001


def lists(configmap: dict | None) -> tuple[list[str], list[str]] | None:
    """(admitted, queued), or None for "nothing to write"."""
    return None if configmap is None else (admission.admitted(configmap),
                                           admission.queued(configmap))


@pytest.mark.parametrize(("holders", "waiting", "wanted", "max_jobs", "after"), [
    ([], [], ["a", "b"], 3, (["a", "b"], [])),
    (["x"], [], ["a", "b", "c"], 3, (["x", "a", "b"], ["c"])),  # in order; the rest queue
    (["x", "a"], [], ["a", "b"], 3, (["x", "a", "b"], [])),     # a holder keeps its one slot
    (["x", "y", "z"], [], ["a"], 3, (["x", "y", "z"], ["a"])),  # full house: queued
    (["x", "y", "z"], ["a"], ["b", "a"], 3, (["x", "y", "z"], ["a", "b"])),  # keeps its place
    (["x", "y", "z"], ["a"], ["a"], 3, None),                  # already queued: nothing to write
    (["x"], [], ["x"], 3, None),                               # already held: nothing to write
    ([], [], ["a", "a", "b"], 3, (["a", "b"], [])),            # a duplicate wish takes one slot
    (["x"], ["a"], ["a"], 3, (["x", "a"], [])),                # room (maxJobs grew): dequeued
])
def test_with_slots(holders: list[str], waiting: list[str], wanted: list[str], max_jobs: int,
                    after: tuple[list[str], list[str]] | None) -> None:
    assert lists(admission.with_slots(holding(*holders, waiting=tuple(waiting)), wanted,
                                      max_jobs)) == after


def test_with_slot_is_one_wish() -> None:
    assert lists(admission.with_slot(holding("x"), "a", 2)) == (["x", "a"], [])
    assert lists(admission.with_slot(holding("x", "a"), "b", 2)) == (["x", "a"], ["b"])


@pytest.mark.parametrize(("holders", "waiting", "leaving", "after"), [
    (["x", "a", "b"], ["c", "d"], ["a", "z"], (["x", "b", "c"], ["d"])),  # the head gets it
    (["x", "a", "b"], ["c", "d"], ["a", "b"], (["x", "c", "d"], [])),
    (["x", "a", "b"], ["c", "d"], ["c"], (["x", "a", "b"], ["d"])),       # leaves the queue
    (["x", "a", "b"], [], ["a"], (["x", "b"], [])),
    (["x"], [], ["z"], None),                                            # nothing to write
    (["x"], ["c"], ["z"], (["x", "c"], [])),                  # room and a queue: served anyway
])
def test_without_gives_the_freed_slots_to_the_head_of_the_queue(
        holders: list[str], waiting: list[str], leaving: list[str],
        after: tuple[list[str], list[str]] | None) -> None:
    before = holding(*holders, waiting=tuple(waiting))
    written = admission.without(before, leaving, 3)
    assert lists(written) == after
    if written is not None:
        assert admission.given(before, written) == \
            [name for name in after[0] if name not in holders]


def test_reconciled() -> None:
    before = holding("x", "gone", waiting=("stopped", "a"))
    written = admission.reconciled(before, gone=["gone"], unqueued=["stopped"],
                                   waiting=["old", "x", "a", "new"], max_jobs=2)
    # "old" and "new" were waiting without a place (lost writes, an older version):
    # they join the queue behind "a", in the listing's order; the freed slot goes to "a".
    assert lists(written) == (["x", "a"], ["old", "new"])
    assert admission.given(before, written) == ["a"]
    assert admission.reconciled(written, [], [], ["old", "new"], 2) is None


def test_a_started_workflow_left_in_the_queue_by_the_tick_keeps_its_slot() -> None:
    """Queued when the tick read the slots, started since: out of the queue, not its slot."""
    now = holding("x", "a")
    assert admission.reconciled(now, gone=[], unqueued=["a"], waiting=[], max_jobs=2) is None


def test_the_queue_stops_growing_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "QUEUE_LIMIT_BYTES", 20)
    written = admission.with_slots(holding("x"), ["aaaa", "bbbb", "cccc", "dddd"], 1)
    assert lists(written) == (["x"], ["aaaa", "bbbb"])  # the others stay Queued, and wait


def test_an_older_configmap_without_a_queue() -> None:
    older = {"data": {"admitted": json.dumps(["x"])}}
    assert admission.queued(older) == []
    assert lists(admission.with_slot(older, "a", 1)) == (["x"], ["a"])


def counted(count: int) -> dict:
    return {"currentJobs": count}


def announced(configmap: dict) -> dict:
    return json.loads(configmap["data"][environment.KEY])


def test_a_change_of_slots_announces_the_slots_it_leaves() -> None:
    take = admission.announcing(lambda cm: admission.with_slot(cm, "a", 3), counted)
    written = take(holding("x"))
    assert admission.admitted(written) == ["x", "a"]
    assert announced(written) == {"currentJobs": 2}
    release = admission.announcing(lambda cm: admission.without(cm, ["x"], 3), counted)
    assert announced(release(written)) == {"currentJobs": 1}


def test_an_announcement_is_written_only_when_stale() -> None:
    unchanged = admission.announcing(lambda cm: None, counted)
    current = admission.empty("default", counted)
    assert announced(current) == {"currentJobs": 0}
    assert unchanged(current) is None
    settings_changed = admission.announcing(lambda cm: None,
                                            lambda count: {"currentJobs": count, "maxJobs": 9})
    assert announced(settings_changed(current)) == {"currentJobs": 0, "maxJobs": 9}
    holding_a = admission.announcing(lambda cm: admission.with_slot(cm, "a", 1), counted)(current)
    held_already = admission.announcing(lambda cm: admission.with_slot(cm, "a", 1), counted)
    assert held_already(holding_a) is None
