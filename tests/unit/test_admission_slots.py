"""Taking and releasing slots on the admission ConfigMap's data (pure functions)."""

from __future__ import annotations

import pytest

from functions.configure import admission


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
