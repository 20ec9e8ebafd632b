"""The stack's process sets aside, for the cyclic garbage collector, what start-up built."""

from __future__ import annotations

import gc
from pathlib import Path

from devstack.stack import Stack


def test_a_started_stack_is_left_out_of_later_collections(tmp_path: Path) -> None:
    frozen_before = gc.get_freeze_count()
    try:
        with Stack(tmp_path / "stack", server="thread", environ={}) as stack:
            assert gc.get_freeze_count() > frozen_before
            broker = stack.eventing.broker
            assert not any(found is broker for found in gc.get_objects(generation=2))
            made_later = ["made by the run"]  # a list is always tracked
            assert any(found is made_later for found in gc.get_objects())
    finally:
        gc.unfreeze()
