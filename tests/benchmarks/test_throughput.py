"""The throughput figure over alternated rounds of the engine and the reference."""

from __future__ import annotations

import pytest

from benchmarks.run import throughput_figure, throughput_round


def _round(engine_wall: float, reference_wall: float, succeeded: int = 200,
           failed: tuple[str, ...] = ()) -> dict:
    return throughput_round(
        {"workflows": 200, "wall_seconds": engine_wall, "phases": {"Succeeded": succeeded},
         "transitions": {}},
        {"workflows": 200, "wall_seconds": reference_wall, "failed": list(failed)})


def test_a_round_keeps_sizes_walls_and_its_ratio() -> None:
    one = _round(50.0, 40.0)
    assert one["ratio"] == pytest.approx(0.8)
    assert "transitions" not in one["engine"]  # the figures' inputs only
    assert one["reference"] == {"workflows": 200, "wall_seconds": 40.0, "failed": []}


def test_rates_are_pooled_over_the_rounds_not_averaged() -> None:
    # ratios 0.5 and 1.0: their mean is 0.75, the pooled rates give 400/150 over 400/100
    figure = throughput_figure([_round(100.0, 50.0), _round(50.0, 50.0)], max_jobs=10)
    assert figure.value == pytest.approx(400 / 150)
    assert figure.reference == pytest.approx(400 / 100)
    assert figure.ratio == pytest.approx(100 / 150)
    assert figure.met is False
    assert "2 round(s), alternated: 0.50x, 1.00x" in figure.note


@pytest.mark.parametrize("bad_round", [_round(40.0, 40.0, succeeded=199),
                                       _round(40.0, 40.0, failed=("ref2-0007",))])
def test_a_failure_in_any_round_misses_the_target(bad_round: dict) -> None:
    figure = throughput_figure([_round(40.0, 40.0), bad_round], max_jobs=10)
    assert figure.ratio == pytest.approx(1.0)
    assert figure.met is False


def test_one_round_is_the_plain_ratio() -> None:
    figure = throughput_figure([_round(45.0, 40.0)], max_jobs=10)
    assert figure.ratio == pytest.approx(40 / 45) and figure.met is True
    assert figure.name == "200 workflows, maxJobs 10: engine vs the same Jobs without it"
