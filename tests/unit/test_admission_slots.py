"""Taking and releasing slots on the admission ConfigMap's data (pure functions)."""

from __future__ import annotations

import json

import pytest

from functions.configure import admission, environment


def holding(*names: str) -> dict:
    return admission._with(admission.empty("default"), list(names))  # noqa: SLF001


@pytest.mark.parametrize(("holders", "wanted", "max_jobs", "after"), [
    ([], ["a", "b"], 3, ["a", "b"]),
    (["x"], ["a", "b", "c"], 3, ["x", "a", "b"]),       # in order, while there is room
    (["x", "a"], ["a", "b"], 3, ["x", "a", "b"]),       # a holder keeps its one slot
    (["x", "y", "z"], ["a"], 3, None),                 # full house: nothing to write
    (["x"], ["x"], 3, None),                           # already held: nothing to write
    ([], ["a", "a", "b"], 3, ["a", "b"]),              # a duplicate wish takes one slot
])
def test_with_slots(holders: list[str], wanted: list[str], max_jobs: int,
                    after: list[str] | None) -> None:
    written = admission.with_slots(holding(*holders), wanted, max_jobs)
    assert (admission.admitted(written) if written is not None else None) == after


def test_with_slot_is_one_wish() -> None:
    assert admission.admitted(admission.with_slot(holding("x"), "a", 2)) == ["x", "a"]
    assert admission.with_slot(holding("x", "a"), "b", 2) is None


def test_without() -> None:
    assert admission.admitted(admission.without(holding("x", "a", "b"), ["a", "z"])) == ["x", "b"]
    assert admission.without(holding("x"), ["z"]) is None


def counted(count: int) -> dict:
    return {"currentJobs": count}


def announced(configmap: dict) -> dict:
    return json.loads(configmap["data"][environment.KEY])


def test_a_change_of_slots_announces_the_slots_it_leaves() -> None:
    take = admission.announcing(lambda cm: admission.with_slot(cm, "a", 3), counted)
    written = take(holding("x"))
    assert admission.admitted(written) == ["x", "a"]
    assert announced(written) == {"currentJobs": 2}
    release = admission.announcing(lambda cm: admission.without(cm, ["x"]), counted)
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
    full_house = admission.announcing(lambda cm: admission.with_slot(cm, "b", 1), counted)
    assert full_house(holding_a) is None
