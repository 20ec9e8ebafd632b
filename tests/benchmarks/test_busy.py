"""How busy the machine was while a burst was admitted: the sampler, the interpolation,
and the window from the first create to the last admitted configure Job."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from benchmarks.engine import EngineRun, admission_window
from benchmarks.machine import BusySampler, busy_between

SAMPLES = [(10.0, 100.0), (10.1, 100.1), (10.2, 100.3)]


def test_busy_between_interpolates_inside_the_samples() -> None:
    assert busy_between(SAMPLES, 10.0, 10.2) == pytest.approx(0.3)
    assert busy_between(SAMPLES, 10.05, 10.15) == pytest.approx(0.15)  # 100.05 -> 100.2
    assert busy_between(SAMPLES, 10.1, 10.1) == 0.0


@pytest.mark.parametrize("start, end", [(9.9, 10.1), (10.0, 10.3), (11.0, 12.0)])
def test_busy_between_knows_nothing_outside_the_samples(start: float, end: float) -> None:
    assert busy_between(SAMPLES, start, end) is None
    assert busy_between([], 10.0, 10.1) is None


def test_the_sampler_counts_at_least_this_process_s_own_work() -> None:
    sampler = BusySampler().start()
    time.sleep(0.05)
    start, own = time.time(), time.process_time()
    while time.process_time() - own < 0.3:  # busy on one core
        pass
    end, own = time.time(), time.process_time() - own
    time.sleep(0.05)
    samples = sampler.stop()

    busy = busy_between(samples, start, end)
    assert busy is not None and busy >= own - 0.05  # the kernel counts in 10 ms ticks


def run(names: list[str], submitted: dict[str, float], jobs: dict[str, float],
        queued: set[str], at_once: bool = True) -> EngineRun:
    timeline = SimpleNamespace(wf_queued=queued)
    return EngineRun("t", names, submitted, 0.0, 0.0, timeline,  # type: ignore[arg-type]
                     [], job_created=jobs, at_once=at_once,
                     busy=[(0.0, 50.0), (1.0, 51.0), (2.0, 53.0)])


def test_the_window_runs_from_the_first_create_to_the_last_admitted_configure_job() -> None:
    found = admission_window(run(
        ["a", "b", "c"], {"a": 0.5, "b": 0.6, "c": 0.4},
        {"a-configure": 1.0, "b-configure": 1.5, "c-configure": 1.9}, queued={"c"}))

    assert found is not None
    assert found["admitted"] == 2 and found["seconds"] == pytest.approx(1.1)  # 0.4 -> 1.5
    assert found["busy_cpu_seconds"] == pytest.approx(1.6)  # 50.4 -> 52.0
    assert found["cpu_seconds_per_admission"] == pytest.approx(0.8)
    assert found["utilisation"] == pytest.approx(1.6 / 1.1 / found["cores"])


def test_no_window_one_at_a_time_or_with_an_admission_missing() -> None:
    submitted, jobs = {"a": 0.5, "b": 0.6}, {"a-configure": 1.0, "b-configure": 1.5}
    assert admission_window(run(["a", "b"], submitted, jobs, set(), at_once=False)) is None
    assert admission_window(run(["a", "b"], submitted, {"a-configure": 1.0}, set())) is None
