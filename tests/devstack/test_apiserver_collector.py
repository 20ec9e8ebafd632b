"""The API server's process keeps Python's full garbage collections short (__main__)."""

from __future__ import annotations

import gc

from devstack.apiserver.__main__ import _freeze_after_full_collection, set_aside_survivors


def test_start_up_and_the_survivors_of_each_full_collection_are_set_aside():
    gc.unfreeze()
    set_aside_survivors()
    try:
        at_start = gc.get_freeze_count()
        assert at_start > 10_000  # what the imports built
        stored = [{"metadata": {"name": f"wf-{i}"}} for i in range(1000)]  # long-lived trees
        gc.collect(1)
        assert gc.get_freeze_count() == at_start  # a young collection freezes nothing
        gc.collect()
        assert gc.get_freeze_count() > at_start + len(stored)  # the list and its trees
        assert all(obj is not stored[0] for obj in gc.get_objects())
    finally:
        gc.callbacks.remove(_freeze_after_full_collection)
        gc.unfreeze()
