"""Run callables on a thread pool, now or after a delay, with no polling."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class Scheduler:
    """A thread pool plus one timer thread that hands due callables to the pool."""

    def __init__(self, max_workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._stopped = False
        self._timer = threading.Thread(target=self._run_timer, name=f"{name}-timer", daemon=True)
        self._timer.start()

    def submit(self, task: Callable[[], None]) -> None:
        """Run `task` as soon as a worker is free (dropped once stopped)."""
        with self._wakeup:
            if not self._stopped:
                self._pool.submit(task)

    def call_later(self, delay: float, task: Callable[[], None]) -> None:
        """Run `task` on the pool after `delay` seconds (dropped once stopped)."""
        with self._wakeup:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), task))
            self._wakeup.notify()

    def pending(self) -> int:
        """How many delayed tasks wait for their time."""
        with self._wakeup:
            return len(self._heap)

    def _run_timer(self) -> None:
        with self._wakeup:
            while not self._stopped:
                if not self._heap:
                    self._wakeup.wait()
                    continue
                due, _, task = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._wakeup.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._pool.submit(task)

    def stop(self) -> None:
        """Drop delayed and queued tasks; running ones end on their own (not awaited)."""
        with self._wakeup:
            self._stopped = True
            self._heap.clear()
            self._wakeup.notify()
        self._timer.join()
        self._pool.shutdown(wait=False, cancel_futures=True)
