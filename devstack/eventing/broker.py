"""The embedded Knative Broker: an HTTP ingress, Triggers from the manifests, HTTP delivery.

Behaviour follows Knative Eventing's channel-based Broker (FACTS.md): filters,
`Prefer: reply` with replies re-ingested, retries per the Trigger's `delivery`,
the dead-letter sink with the `knativeerror*` extensions, and the
`knativebrokerttl` loop guard. Triggers are re-read when a manifest changes: a
file added, removed or renamed into place at once, a file edited in place within
a second.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cloudevents.core.base import BaseCloudEvent

from devstack.eventing.delivery import (
    BROKER_DEFAULT_DELIVERY,
    DeliverySpec,
    Response,
    Sender,
    is_retryable,
    parse_delivery,
    resolve_destination,
)
from devstack.eventing.events import (
    MalformedEvent,
    attribute_strings,
    from_http,
    is_cloudevent_message,
    replace,
)
from devstack.eventing.filters import FilterError, Predicate, compile_trigger_filter
from devstack.eventing.manifests import (
    DEFAULT_MANIFESTS_DIR,
    Manifest,
    ManifestError,
    folder_signature,
    load_manifests,
    select,
)
from devstack.eventing.scheduler import Scheduler

log = logging.getLogger(__name__)

EVENTING_GROUP = "eventing.knative.dev"
TTL_EXTENSION = "knativebrokerttl"
DEFAULT_TTL = 255
MAX_BODY = 16 * 1024 * 1024
ERROR_DATA_LIMIT = 1024
SHUTDOWN_POLL = 0.05  # how often serve_forever checks for stop(); requests never wait on it


@dataclass(frozen=True)
class Trigger:
    """A Trigger as the Broker uses it: resolved subscriber URL, compiled filter, delivery."""

    name: str
    subscriber: str
    matches: Predicate
    delivery: DeliverySpec
    where: str


@dataclass(frozen=True)
class LogEntry:
    """One thing the Broker did, for tests and the benchmark.

    `what`: accepted, delivered, reply, retried, failed, dead_lettered, lost,
    ttl_dropped, reload_failed, malformed.
    """

    at: float
    what: str
    event_id: str | None = None
    event_type: str | None = None
    trigger: str | None = None
    url: str | None = None
    status: int | None = None
    attempt: int = 0
    detail: str = ""


def load_triggers(
    manifests: list[Manifest],
    broker: str,
    namespace: str,
    addressables: Mapping[str, Mapping[str, str]],
) -> list[Trigger]:
    """The Triggers of `broker` in `namespace` (a Trigger without a namespace is in it).

    The Broker manifest's `spec.delivery`, when present, is the default of every
    Trigger's `delivery`, field by field, over Knative's (retry 10, exponential, PT0.2S).
    """
    base = BROKER_DEFAULT_DELIVERY
    for manifest in select(manifests, "Broker", EVENTING_GROUP):
        if manifest.name == broker and manifest.namespace in (None, namespace):
            base = parse_delivery(
                manifest.spec.get("delivery"), f"{manifest.where}: spec.delivery", addressables
            )
    triggers = []
    for manifest in select(manifests, "Trigger", EVENTING_GROUP):
        spec = manifest.spec
        if spec.get("broker") != broker or manifest.namespace not in (None, namespace):
            continue
        where = manifest.where
        if "subscriber" not in spec:
            raise ManifestError(f"{where}: spec.subscriber is required")
        try:
            predicate = compile_trigger_filter(spec, "spec")
        except FilterError as exc:
            raise ManifestError(f"{where}: {exc}") from exc
        triggers.append(
            Trigger(
                name=manifest.name,
                subscriber=resolve_destination(
                    spec["subscriber"], f"{where}: spec.subscriber", addressables
                ),
                matches=predicate,
                delivery=parse_delivery(
                    spec.get("delivery"), f"{where}: spec.delivery", addressables, base
                ),
                where=where,
            )
        )
    names = [t.name for t in triggers]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ManifestError(f"Trigger {sorted(duplicated)[0]!r} is defined more than once")
    return triggers


@dataclass
class _Job:
    """One event on its way to one destination, across its attempts."""

    trigger: Trigger
    url: str
    event: BaseCloudEvent
    ttl: int
    delivery: DeliverySpec
    dead_letter: bool = False
    attempt: int = 0


class Broker:
    """An in-process Knative Broker.

    `services` maps a Knative Service name to its base URL (what `subscriber.ref`
    and `deadLetterSink.ref` resolve to). Use as a context manager or
    `start()`/`stop()`. POST events to `url`.
    """

    def __init__(
        self,
        manifests_dir: Path | str = DEFAULT_MANIFESTS_DIR,
        services: Mapping[str, str] | None = None,
        name: str = "c2d",
        namespace: str = "default",
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 32,
        log_size: int = 10000,
        recheck_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.manifests_dir = Path(manifests_dir)
        self._server = _IngressServer((host, port), _IngressHandler)
        self._server.broker = self
        self.url = f"http://{host}:{self._server.server_address[1]}/{namespace}/{name}"
        self._addressables = {"Service": dict(services or {}), "Broker": {name: self.url}}
        self._reload_lock = threading.Lock()
        # Looking at every file costs a stat each; once per event it was 5 % of the
        # stack's CPU under load. So per event only the folder's own mtime is looked at
        # (a file added, removed or renamed into place changes it), and the files at
        # most every `recheck_seconds` (an edit in place shows only there).
        self._recheck_seconds = recheck_seconds
        self._checked_at = time.monotonic()
        self._folder_mtime: int | None = _settled(_mtime_ns(self.manifests_dir))
        self._signature: tuple[tuple[str, int, int], ...] | None = _settled_signature(
            folder_signature(self.manifests_dir))
        try:
            self._triggers = self._load()
        except Exception:
            self._server.server_close()
            raise
        self._sender = Sender()
        self._scheduler = Scheduler(max_workers, f"broker-{name}")
        self._idle = threading.Condition()
        self._in_flight = 0
        self._counters: Counter[str] = Counter()
        self._log: deque[LogEntry] = deque(maxlen=log_size)
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Broker:
        """Serve the ingress in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(SHUTDOWN_POLL,),
                name=f"broker-{self.name}-ingress", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the ingress and drop pending retries; running deliveries are not awaited."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self._scheduler.stop()
        self._sender.close()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routing -----------------------------------------------------------

    @property
    def triggers(self) -> list[Trigger]:
        """The current Triggers (re-read first if a manifest changed)."""
        self._reload_if_changed()
        return list(self._triggers)

    def reload(self) -> None:
        """Re-read the Triggers now; a bad manifest raises and keeps the old Triggers."""
        with self._reload_lock:
            self._signature = _settled_signature(folder_signature(self.manifests_dir))
            self._triggers = self._load()

    def _load(self) -> list[Trigger]:
        return load_triggers(
            load_manifests(self.manifests_dir), self.name, self.namespace, self._addressables
        )

    def _reload_if_changed(self) -> None:
        now, folder_mtime = time.monotonic(), _mtime_ns(self.manifests_dir)
        if self._looked_at(folder_mtime, now):
            return
        with self._reload_lock:
            if self._looked_at(folder_mtime, now):  # by the event we waited for
                return
            signature = folder_signature(self.manifests_dir)
            if signature != self._signature:
                self._signature = _settled_signature(signature)
                try:
                    self._triggers = self._load()
                    log.info("broker %s: reloaded %d triggers", self.name, len(self._triggers))
                except (ManifestError, OSError) as exc:
                    log.error("broker %s: keeping the previous triggers: %s", self.name, exc)
                    self._record("reload_failed", detail=str(exc))
            # Recorded last: an event that finds this look recorded finds its Triggers
            # loaded (recorded first, a concurrent event skipped the look and routed
            # with the old Triggers while this one was still loading the new).
            self._checked_at, self._folder_mtime = now, _settled(folder_mtime)

    def _looked_at(self, folder_mtime: int, now: float) -> bool:
        """Whether this folder mtime was looked at, less than `recheck_seconds` ago."""
        return folder_mtime == self._folder_mtime \
            and now - self._checked_at < self._recheck_seconds

    def ingest(self, event: BaseCloudEvent) -> list[str]:
        """Accept an event as the ingress does; returns the names of the matching Triggers."""
        ttl = _ttl_of(event)
        if ttl is None:
            ttl = DEFAULT_TTL
        if ttl <= 0:
            self._record("ttl_dropped", event, detail=f"{TTL_EXTENSION}={ttl}")
            return []
        # The TTL travels beside the event; subscribers get the event without it. Only
        # re-ingested replies carry one: a source's event is routed as it came.
        if event.get_extension(TTL_EXTENSION) is not None:
            event = replace(event, **{TTL_EXTENSION: None})
        attributes = attribute_strings(event)
        matched = [t for t in self.triggers if t.matches(attributes)]
        self._record("accepted", event, detail=",".join(t.name for t in matched))
        for trigger in matched:
            self._begin()
            self._scheduler.submit(
                self._runner(_Job(trigger, trigger.subscriber, event, ttl, trigger.delivery))
            )
        return [t.name for t in matched]

    # -- delivery ----------------------------------------------------------

    def _runner(self, job: _Job) -> Callable[[], None]:
        def run() -> None:
            again = False
            try:
                again = self._attempt(job)
            except Exception:  # a bug here must not leave the Broker "busy" forever
                log.exception("broker %s: delivery to %s crashed", self.name, job.url)
                self._record("lost", job.event, job, detail="internal error")
            finally:
                if not again:
                    self._end()

        return run

    def _attempt(self, job: _Job) -> bool:
        """One attempt; True when a retry was scheduled (the job stays in flight)."""
        extra = {} if job.dead_letter else {"Prefer": "reply"}
        response = self._sender.send(
            job.url, job.event, job.delivery.timeout, job.delivery.structured, extra
        )
        reply, response = self._read_reply(job, response)
        if response.status is not None and 200 <= response.status < 300:
            self._record("dead_lettered" if job.dead_letter else "delivered", job.event, job,
                         status=response.status)
            if reply is not None:
                self._reingest(reply, job)
            return False
        if is_retryable(response.status) and job.attempt < job.delivery.retry:
            job.attempt += 1
            self._record("retried", job.event, job, status=response.status,
                         detail=response.error or "")
            self._scheduler.call_later(job.delivery.delay(job.attempt), self._runner(job))
            return True
        self._give_up(job, response)
        return False

    def _read_reply(self, job: _Job, response: Response) -> tuple[BaseCloudEvent | None, Response]:
        """The reply event of a 2xx (not 202); a non-CloudEvent body becomes a 502."""
        status = response.status
        if job.dead_letter or status is None or not 200 <= status < 300 or status == 202:
            return None, response
        if not response.body and not is_cloudevent_message(response.headers):
            return None, response
        try:
            return from_http(response.headers, response.body), response
        except MalformedEvent as exc:
            return None, Response(502, response.headers, response.body, f"bad reply: {exc}")

    def _reingest(self, reply: BaseCloudEvent, job: _Job) -> None:
        self._record("reply", reply, job)
        ttl = job.ttl - 1
        if ttl <= 0:
            self._record("ttl_dropped", reply, job, detail=f"{TTL_EXTENSION} reached 0")
            return
        self.ingest(replace(reply, **{TTL_EXTENSION: str(ttl)}))

    def _give_up(self, job: _Job, response: Response) -> None:
        detail = response.error or f"HTTP {response.status}"
        if job.dead_letter:
            self._record("lost", job.event, job, status=response.status, detail=detail)
            return
        self._record("failed", job.event, job, status=response.status, detail=detail)
        sink = job.delivery.dead_letter_sink
        if not sink:
            return
        errors: dict[str, str] = {"knativeerrordest": job.url}
        if response.status is not None:
            errors["knativeerrorcode"] = str(response.status)
        if response.body:
            errors["knativeerrordata"] = base64.b64encode(
                response.body[:ERROR_DATA_LIMIT]
            ).decode("ascii")
        event = replace(job.event, **errors)
        self._begin()
        self._scheduler.submit(
            self._runner(_Job(job.trigger, sink, event, job.ttl, job.delivery, dead_letter=True))
        )

    # -- observation -------------------------------------------------------

    def _begin(self) -> None:
        with self._idle:
            self._in_flight += 1

    def _end(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no delivery is running or waiting for a retry; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    @property
    def in_flight(self) -> int:
        with self._idle:
            return self._in_flight

    @property
    def counters(self) -> dict[str, int]:
        """How many times each LogEntry `what` happened."""
        with self._idle:
            return dict(self._counters)

    def log(self, what: str | None = None) -> list[LogEntry]:
        """The recent LogEntries, oldest first, optionally only one kind."""
        with self._idle:
            return [e for e in self._log if what is None or e.what == what]

    def _record(
        self,
        what: str,
        event: BaseCloudEvent | None = None,
        job: _Job | None = None,
        status: int | None = None,
        detail: str = "",
    ) -> None:
        entry = LogEntry(
            at=time.time(),
            what=what,
            event_id=event.get_id() if event is not None else None,
            event_type=event.get_type() if event is not None else None,
            trigger=job.trigger.name if job else None,
            url=job.url if job else None,
            status=status,
            attempt=job.attempt if job else 0,
            detail=detail,
        )
        with self._idle:
            self._counters[what] += 1
            self._log.append(entry)
        log.debug("broker %s: %s", self.name, entry)


def _ttl_of(event: BaseCloudEvent) -> int | None:
    value = event.get_extension(TTL_EXTENSION)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _mtime_ns(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return 0


# File systems stamp mtimes from a coarse clock: a change in the same tick as our
# look keeps the mtime we saw. A stamp this recent is not remembered (None never
# matches), so the next look checks again, as git does with racy index entries.
RACY_NS = 100_000_000


def _settled(mtime_ns: int) -> int | None:
    return mtime_ns if time.time_ns() - mtime_ns > RACY_NS else None


def _settled_signature(signature: tuple[tuple[str, int, int], ...]
                       ) -> tuple[tuple[str, int, int], ...] | None:
    settled = all(_settled(mtime) is not None for _, mtime, _ in signature)
    return signature if settled else None


class LocalSender(Sender):
    """A Sender that hands events for `broker` straight to its `ingest`, in this process.

    Sources of the embedded stack live in the Broker's own process; going through
    its HTTP ingress cost a request and a parse per event on both sides. What the
    ingress would check is checked here too: the TTL guard, and a 202 once accepted.
    Events for any other URL go over HTTP as usual.
    """

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.broker = broker

    def send(self, url: str, event: BaseCloudEvent, timeout: float | None = None,
             structured: bool = False,
             extra_headers: Mapping[str, str] | None = None) -> Response:
        if url.rstrip("/") != self.broker.url:
            return super().send(url, event, timeout, structured, extra_headers)
        self.broker.ingest(event)
        return Response(202)


class _IngressServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    broker: Broker


class _IngressHandler(BaseHTTPRequestHandler):
    """POST /<namespace>/<broker>: 202 accepted, 400 malformed, as Knative's ingress."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in separate writes
    server: _IngressServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        broker = self.server.broker
        try:
            body = self._read_body()
        except ValueError as exc:
            self._answer(400, str(exc), close=True)
            return
        expected = f"/{broker.namespace}/{broker.name}"
        if self.path.split("?")[0].rstrip("/") != expected:
            self._answer(404, f"no broker at {self.path}; POST to {expected}")
            return
        try:
            event = from_http(dict(self.headers.items()), body)
        except MalformedEvent as exc:
            broker._record("malformed", detail=str(exc))
            self._answer(400, str(exc))
            return
        broker.ingest(event)
        self._answer(202, "")

    def do_GET(self) -> None:  # noqa: N802
        self._answer(405, "the broker ingress accepts POST only")

    do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit():
            raise ValueError(f"bad Content-Length {length!r}")
        if int(length) > MAX_BODY:
            raise ValueError(f"body larger than {MAX_BODY} bytes")
        return self.rfile.read(int(length))

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(100).split(b";")[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ValueError("bad chunked encoding") from None
            if size == 0:
                while self.rfile.readline(1000).strip():  # trailers
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise ValueError(f"body larger than {MAX_BODY} bytes")
            body += self.rfile.read(size)
            self.rfile.readline(10)

    def _answer(self, status: int, text: str, close: bool = False) -> None:
        payload = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("broker ingress: " + format, *args)
