"""The embedded PingSource: `dev.knative.sources.ping` events on a cron schedule.

The event is the real adapter's: source `/apis/v1/namespaces/<ns>/pingsources/<name>`,
a fresh id, `time` the scheduled time, `spec.data` (or `spec.dataBase64`) with
`spec.contentType`. For local runs `period` replaces the schedule by a tick
every N seconds, and `fire()` ticks at once.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudevents.core.base import BaseCloudEvent

from devstack.eventing.cron import CronError, CronSchedule
from devstack.eventing.delivery import Response, Sender, send_with_retry
from devstack.eventing.events import ce_overrides, make_event
from devstack.eventing.manifests import Manifest, ManifestError

log = logging.getLogger(__name__)

PING_TYPE = "dev.knative.sources.ping"


class PingSource:
    """One PingSource manifest, sending to `sink` (the resolved URL of its `spec.sink`)."""

    def __init__(
        self,
        manifest: Manifest,
        sink: str,
        namespace: str = "default",
        period: float | None = None,
        sender: Sender | None = None,
    ) -> None:
        spec = manifest.spec
        where = manifest.where
        self.name = manifest.name
        self.namespace = manifest.namespace or namespace
        self.sink = sink
        self.source = f"/apis/v1/namespaces/{self.namespace}/pingsources/{self.name}"
        try:
            self.schedule = CronSchedule.parse(spec.get("schedule", ""), spec.get("timezone"))
        except CronError as exc:
            raise ManifestError(f"{where}: spec.schedule: {exc}") from exc
        if period is not None and period <= 0:
            raise ValueError(f"PingSource {self.name}: period must be positive, not {period}")
        self.period = period
        self.content_type = spec.get("contentType")
        self.data = _data(spec, where)
        self.extensions = ce_overrides(spec, where)
        self._sender = sender or Sender()
        self._own_sender = sender is None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.fired = 0

    def event(self, at: datetime | None = None) -> BaseCloudEvent:
        """The event of one tick scheduled at `at` (now by default)."""
        attributes: dict[str, Any] = {
            "type": PING_TYPE,
            "source": self.source,
            "time": at or datetime.now(UTC),
            **self.extensions,
        }
        if self.content_type and self.data is not None:
            attributes["datacontenttype"] = self.content_type
        return make_event(attributes, self.data)

    def fire(self, at: datetime | None = None) -> Response:
        """Send one tick now; returns the sink's last answer (dropped after 5 retries)."""
        response = send_with_retry(self._sender, self.sink, self.event(at), stop=self._stop)
        with self._lock:
            self.fired += 1
        if response.status is None or not 200 <= response.status < 300:
            log.warning("pingsource %s: tick dropped: %s", self.name,
                        response.error or f"HTTP {response.status}")
        return response

    def next_tick(self, after: datetime) -> datetime:
        if self.period is not None:
            return after + timedelta(seconds=self.period)
        return self.schedule.next_after(after)

    def start(self) -> PingSource:
        """Tick in a background thread until `stop()`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"ping-{self.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        due = self.next_tick(datetime.now(UTC))
        while True:
            wait = (due - datetime.now(UTC)).total_seconds()
            if self._stop.wait(max(wait, 0)):
                return
            self.fire(due)
            due = self.next_tick(due)
            now = datetime.now(UTC)
            if due < now:  # like cron, skip the ticks missed while a slow sink kept us busy
                due = self.next_tick(now)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._own_sender:
            self._sender.close()


def _data(spec: dict[str, Any], where: str) -> bytes | None:
    if spec.get("data") is not None and spec.get("dataBase64") is not None:
        raise ManifestError(f"{where}: set spec.data or spec.dataBase64, not both")
    if spec.get("dataBase64") is not None:
        try:
            return base64.b64decode(spec["dataBase64"], validate=True)
        except (binascii.Error, TypeError) as exc:
            raise ManifestError(f"{where}: spec.dataBase64 is not base64: {exc}") from exc
    data = spec.get("data")
    if data is None:
        return None
    if not isinstance(data, str):
        raise ManifestError(f"{where}: spec.data must be a string")
    return data.encode("utf-8")

