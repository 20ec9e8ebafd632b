"""The `c2d` command: run workflows on the embedded stack or on any cluster.

Embedded stack:  `c2d run WORKFLOW.yaml`, `c2d up`, `c2d down`, `c2d status`, `c2d serve`.
Any cluster (the current kubeconfig, the embedded one included):
`c2d submit|status NAME|logs|stop|results|list`. Offline: `c2d render WORKFLOW.yaml`.

Workflow files may say `{{DATA_URL}}`: it becomes the URL where the embedded stack
serves the `data/` folder next to the workflow file (see examples/README.md).

Every failure is one line on stderr, `c2d: error: ...`, and a non-zero exit code:
1 an error, 2 bad usage; `c2d run` exits 0 when the workflow Succeeded, 3 Failed,
4 Stopped, 5 when --timeout expired first.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from shared import manifests
from shared import settings as settings_module
from shared import workflow as wf

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILED, EXIT_STOPPED, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
PHASE_EXIT = {"Succeeded": EXIT_OK, "Failed": EXIT_FAILED, "Stopped": EXIT_STOPPED}
DATA_URL = "{{DATA_URL}}"
RENDER_DATA_URL = "http://127.0.0.1:8000/data"
LOG_STAGES = ("algorithm", "configure", "filter", "publish")
LOG_RESULT_TYPES = {"algorithm": "algorithmLog", "configure": "configurationLog",
                    "filter": "filteringLog", "publish": "publishLog"}
POLL = 0.3  # seconds between two looks at the algorithm's log


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.code = code


def c2d_version() -> str:
    try:
        return version("c2d")
    except PackageNotFoundError:
        return "unknown"


def home() -> Path:
    """Where c2d keeps its state: $C2D_HOME, default ~/.c2d."""
    return Path(os.environ.get("C2D_HOME") or "~/.c2d").expanduser()


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- workflow files


def read_workflow(path: str, data_url: str | Callable[[], str | None] | None) -> dict:
    """The Workflow in `path`, `{{DATA_URL}}` replaced, checked as the engine will.

    `data_url` may be a function, called only when the file uses the placeholder.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"workflow file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read workflow file {path}: {error}") from None
    if DATA_URL in text:
        if callable(data_url):
            data_url = data_url()
        if data_url is None:
            raise CliError(f"{path} uses {DATA_URL}: run it with `c2d run`, submit it to the "
                           "embedded stack, or pass --data-url URL")
        text = text.replace(DATA_URL, data_url.rstrip("/"))
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise CliError(f"{path} is not valid YAML{line}: {getattr(error, 'problem', error)}") \
            from None
    if not isinstance(body, dict):
        raise CliError(f"{path}: must hold one Workflow object (a YAML mapping)")
    kind, api_version = body.setdefault("kind", wf.KIND), body.setdefault("apiVersion",
                                                                          wf.API_VERSION)
    if kind != wf.KIND or api_version != wf.API_VERSION:
        raise CliError(f"{path}: kind/apiVersion must be {wf.KIND} / {wf.API_VERSION}, "
                       f"got {kind} / {api_version}")
    metadata = body.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise CliError(f"{path}: metadata must be a mapping")
    if not metadata.get("name") and not metadata.get("generateName"):
        metadata["generateName"] = default_prefix(file)
    probe = {**body, "metadata": {**metadata, "name": metadata.get("name") or "probe"}}
    try:
        wf.validate(probe)
    except wf.InvalidWorkflow as error:
        raise CliError(f"{path}: invalid workflow: {error}") from None
    prefix = metadata.get("generateName")
    if not metadata.get("name") and (not isinstance(prefix, str) or
                                     not re.fullmatch(r"[a-z0-9][-a-z0-9]*-?", prefix)
                                     or len(prefix) > wf.MAX_NAME_LENGTH - 5):
        raise CliError(f"{path}: metadata.generateName must be a lowercase DNS prefix of at "
                       f"most {wf.MAX_NAME_LENGTH - 5} characters, got {prefix!r}")
    return body


def default_prefix(file: Path) -> str:
    """`hello-` for examples/hello/workflow.yaml, `my-flow-` for my_flow.yaml."""
    stem = file.parent.name if file.stem == "workflow" else file.stem
    prefix = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:30].strip("-")
    return f"{prefix or 'workflow'}-"


def data_folder(path: str) -> Path:
    """The folder `{{DATA_URL}}` stands for: `data/` beside the workflow file."""
    return Path(path).resolve().parent / "data"


# ---------------------------------------------------------------- cluster access


class Cluster:
    """The Workflows of one namespace, through the official client."""

    def __init__(self, kubeconfig: str | None, namespace: str | None):
        self.kubeconfig = kubeconfig
        try:
            self.api = config.new_client_from_config(config_file=kubeconfig)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        except (ConfigException, OSError, yaml.YAMLError, TypeError) as error:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise CliError(f"cannot load kubeconfig {where}: {error}") from None
        self.server = self.api.configuration.host
        self.namespace = namespace or (active or {}).get("context", {}).get("namespace") \
            or "default"
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    def _args(self) -> tuple[str, str, str, str]:
        return wf.GROUP, wf.VERSION, self.namespace, wf.PLURAL

    def create(self, body: dict) -> dict:
        body["metadata"]["namespace"] = self.namespace
        return self.custom.create_namespaced_custom_object(*self._args(), body)

    def get(self, name: str) -> dict:
        try:
            return self.custom.get_namespaced_custom_object(*self._args(), name)
        except ApiException as error:
            if error.status == 404:
                raise CliError(f"workflow {name} not found in namespace {self.namespace}") \
                    from None
            raise

    def list(self) -> list[dict]:
        items = self.custom.list_namespaced_custom_object(*self._args())["items"]
        return sorted(items, key=lambda w: (w["metadata"].get("creationTimestamp", ""),
                                            w["metadata"]["name"]))

    def next_version(self, workflow: dict, timeout: float) -> dict | None:
        """The workflow's next version (a watch from its resourceVersion); None at timeout."""
        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object, *self._args(),
            field_selector=f"metadata.name={wf.name(workflow)}",
            resource_version=workflow["metadata"]["resourceVersion"],
            timeout_seconds=max(1, int(min(timeout, 60))))
        for event in stream:
            if event["type"] == "DELETED":
                raise CliError(f"workflow {wf.name(workflow)} was deleted")
            version = event["object"]["metadata"].get("resourceVersion")
            if event["type"] in ("ADDED", "MODIFIED") and \
                    version != workflow["metadata"]["resourceVersion"]:
                stream.close()
                return event["object"]
        return None

    def request_stop(self, name: str) -> dict:
        self.get(name)
        return self.custom.patch_namespaced_custom_object(
            *self._args(), name, {"spec": {"stopRequested": True}})

    def pod_log(self, name: str, stage: str) -> str | None:
        """The newest log of the stage's pod, None when no pod is left."""
        job = wf.ObjectNames(name).job(stage)
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job}")
        if not pods.items:
            return None
        newest = max(pods.items, key=lambda p: p.metadata.creation_timestamp or datetime.min)
        try:
            return self.core.read_namespaced_pod_log(newest.metadata.name, self.namespace)
        except ApiException as error:
            if error.status in (400, 404):  # not started yet, or just deleted
                return None
            raise


def resolve_kubeconfig(given: str | None) -> str | None:
    """--kubeconfig, else $KUBECONFIG, else the running embedded stack, else ~/.kube/config."""
    if given:
        return given
    if os.environ.get("KUBECONFIG"):
        return None  # the client reads (and merges) $KUBECONFIG itself
    state = running_stack()
    if state:
        return state["kubeconfig"]
    if Path("~/.kube/config").expanduser().exists():
        return None
    raise CliError("no cluster: start the embedded one with `c2d up`, "
                   "or set KUBECONFIG / --kubeconfig")


def cluster_from(args: argparse.Namespace) -> Cluster:
    return Cluster(resolve_kubeconfig(args.kubeconfig), args.namespace)


# ---------------------------------------------------------------- output


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    seconds = int((datetime.now(UTC) - wf.parse_time(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def stage_of(code: int) -> str:
    if code <= wf.QUEUED:
        return "queued" if code else "submitted"
    if code < wf.PROVISIONED:
        return "configure"
    if code < wf.FILTERING:
        return "algorithm"
    if code < wf.PUBLISHING:
        return "filter"
    return "publish" if code < wf.FINISHED else "finished"


def local_path(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def results_table(workflow: dict) -> str:
    results = wf.status(workflow).get("results") or []
    rows = [[r.get("index", ""), r.get("type", ""), r.get("filename", ""),
             r.get("filesize", ""), r.get("url", "")] for r in results]
    return table(rows, ["INDEX", "TYPE", "FILENAME", "SIZE", "URL"])


def unlisted_results(workflow: dict) -> str | None:
    """Where the results too many for the status are listed, when there are any."""
    unlisted, where = wf.unlisted_results(wf.status(workflow))
    if not unlisted:
        return None
    return f"{unlisted} more results (too many for the status) are listed in {where}"


def result_folders(workflow: dict) -> list[Path]:
    """The local folders holding the results (file:// URLs only)."""
    folders = []
    for result in wf.status(workflow).get("results") or []:
        path = local_path(result.get("url", ""))
        if path is not None and path.parent not in folders:
            folders.append(path.parent)
    return folders


def describe(workflow: dict) -> str:
    status = wf.status(workflow)
    fields = [("name", wf.name(workflow)), ("namespace", wf.namespace(workflow)),
              ("phase", status.get("phase", "-")),
              ("status", f"{status.get('statusCode', 0)} {status.get('statusText', '')}".strip()),
              ("stopReason", status.get("stopReason")), ("message", status.get("message")),
              ("created", workflow["metadata"].get("creationTimestamp")),
              ("started", status.get("dateStarted")), ("finished", status.get("dateFinished")),
              ("results", len(status.get("results") or []) or None),
              ("notifications", status.get("notifications"))]
    return "\n".join(f"{k + ':':15}{v if not isinstance(v, dict) else json.dumps(v)}"
                     for k, v in fields if v not in (None, ""))


def read_url(url: str) -> str:
    path = local_path(url)
    if path is not None:
        return path.read_text(encoding="utf-8", errors="replace")
    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.text


def stage_log(cluster: Cluster, workflow: dict, stage: str) -> str | None:
    """The stage's log: from its pod while there is one, else from the published results."""
    text = cluster.pod_log(wf.name(workflow), stage)
    if text is not None:
        return text
    for result in wf.status(workflow).get("results") or []:
        if result.get("type") == LOG_RESULT_TYPES[stage] and result.get("url"):
            try:
                return read_url(result["url"])
            except (OSError, requests.RequestException) as error:
                raise CliError(f"cannot read the published {stage} log "
                               f"{result['url']}: {error}") from None
    return None


# ---------------------------------------------------------------- following a workflow


class LogFollower:
    """Copies the algorithm's log to stderr as it grows (prefixed `algorithm| `).

    A thread polls the pod's log once the algorithm runs; `finish` adds what the
    pod wrote last from the published copy (the pod is gone by then).
    """

    def __init__(self, cluster: Cluster, name: str):
        self.cluster, self.name, self.shown = cluster, name, 0
        self.running = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def show(self, text: str | None) -> None:
        with self._lock:
            if text and len(text) > self.shown:
                for line in text[self.shown:].splitlines():
                    say(f"algorithm| {line}")
                self.shown = len(text)

    def _poll(self) -> None:
        while not self.done.is_set():
            if self.running.is_set():
                with suppress(ApiException, urllib3.exceptions.HTTPError):
                    self.show(self.cluster.pod_log(self.name, "algorithm"))
            self.done.wait(POLL)

    def finish(self, workflow: dict | None) -> None:
        self.done.set()
        self._thread.join()
        for result in wf.status(workflow or {}).get("results") or []:
            if result.get("type") == "algorithmLog" and result.get("url"):
                with suppress(OSError, requests.RequestException):
                    self.show(read_url(result["url"]))


class Progress:
    """One stderr line per status change: elapsed time, stage, code, text."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last: tuple[Any, ...] | None = None

    def show(self, workflow: dict) -> None:
        status = wf.status(workflow)
        code = wf.code_of(status)
        shown = (code, status.get("phase"), status.get("stopReason"))
        if shown == self.last:
            return
        self.last = shown
        text = status.get("statusText") or "submitted"
        extra = f" ({status['stopReason']})" if status.get("stopReason") else ""
        say(f"[{time.monotonic() - self.started:6.1f}s] {stage_of(code):<10} {code:>3} "
            f"{text}{extra}")


def follow(cluster: Cluster, name: str, timeout: float, follow_logs: bool) -> dict | None:
    """Show every status change until the workflow ends; the final Workflow, None on timeout.

    A watch (not polling) so that no step is missed, however short.
    """
    deadline = time.monotonic() + timeout
    progress = Progress()
    logs = LogFollower(cluster, name) if follow_logs else None
    workflow = cluster.get(name)
    try:
        while True:
            progress.show(workflow)
            if logs is not None and wf.status_code(workflow) >= wf.RUNNING:
                logs.running.set()
            if wf.is_final(workflow):
                return workflow
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            changed = cluster.next_version(workflow, remaining)
            if changed is not None:
                workflow = changed
    finally:
        if logs is not None:
            logs.finish(workflow if wf.is_final(workflow) else None)


def report(workflow: dict) -> int:
    """Print the outcome and results; the exit code for the workflow's phase."""
    status = wf.status(workflow)
    phase = status.get("phase")
    line = f"workflow {wf.name(workflow)}: {phase}"
    if status.get("stopReason"):
        line += f" ({status['stopReason']})"
    if status.get("message"):  # may hold the pod's last lines: indent them under the outcome
        first, *rest = status["message"].splitlines() or [""]
        line += f": {first}" + "".join(f"\n    {more}" for more in rest)
    say(line)
    if status.get("results"):
        print(results_table(workflow), flush=True)
        for folder in result_folders(workflow):
            say(f"files: {folder}")
    return PHASE_EXIT.get(phase, EXIT_ERROR)


# ---------------------------------------------------------------- the background stack


def state_file() -> Path:
    return home() / "stack.json"


def pid_file() -> Path:
    return home() / "stack.pid"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_stack() -> dict | None:
    """The state of the running background stack (`c2d up`), None when there is none."""
    try:
        state = json.loads(state_file().read_text())
        pid = int(pid_file().read_text().strip())
    except (OSError, ValueError):
        return None
    return state if state.get("pid") == pid and alive(pid) else None


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifests", metavar="DIR",
                        help="the Knative manifests that define routing (default: knative/)")
    parser.add_argument("--ping-period", type=positive, metavar="S",
                        help="resync tick every S seconds instead of the PingSource schedule")
    parser.add_argument("--server", choices=("thread", "gunicorn"), default="thread",
                        help="serve the functions in this process (default) or with gunicorn")


def make_stack(args: argparse.Namespace, workdir: Path, data_root: Path | None) -> Any:
    from devstack.stack import KNATIVE_DIR, Stack, StackError

    try:
        return Stack(workdir, manifests_dir=Path(args.manifests) if args.manifests
                     else KNATIVE_DIR, data_root=data_root, ping_period=args.ping_period,
                     server=args.server)
    except StackError as error:
        raise CliError(str(error)) from None


@contextmanager
def started(stack: Any) -> Iterator[Any]:
    """The stack started (stopped on the way out, whatever happens)."""
    from devstack.stack import StackError

    try:
        stack.start()
    except (StackError, OSError, RuntimeError, ApiException) as error:
        stack.stop()
        raise CliError(f"the embedded stack did not start: {error} (log: {stack.log_path})") \
            from None
    try:
        yield stack
    finally:
        stack.stop()


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(3600):
        pass


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    folder = data_folder(args.workflow)
    read_workflow(args.workflow, "http://127.0.0.1:1/data")  # fail fast, before the stack
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = fresh_workdir(Path(args.workdir)) if args.workdir else Path(tempfile.mkdtemp(
        prefix=f"{stamp}-", dir=ensure(home() / "runs")))
    stack = make_stack(args, workdir, folder.parent)
    signal.signal(signal.SIGTERM, interrupt)  # stop the stack on `kill` too, not only Ctrl-C
    say(f"starting the embedded stack in {workdir} ...")
    with started(stack):
        body = read_workflow(args.workflow, stack.data.url_for(folder))
        cluster = Cluster(str(stack.kubeconfig), stack.namespace)
        name = cluster.create(body)["metadata"]["name"]
        say(f"submitted workflow {name} (namespace {stack.namespace}); "
            f"kubeconfig {stack.kubeconfig}")
        workflow = follow(cluster, name, args.timeout, args.follow_logs)
        if workflow is None:
            code = fail(f"workflow {name} did not finish within {args.timeout:g} s "
                        f"(log: {stack.log_path})", EXIT_TIMEOUT)
        else:
            code = report(workflow)
        if args.keep:
            say(f"the stack keeps running: export KUBECONFIG={stack.kubeconfig}; "
                "press Ctrl-C to stop it")
            wait_for_signal()
    return code


def fresh_workdir(folder: Path) -> Path:
    """`folder` emptied for a new stack, if it held one before; never any other folder."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        if not (folder / "kubeconfig").is_file() or not (folder / "stack.log").is_file():
            raise CliError(f"--workdir {folder}: exists and is not an old c2d stack folder; "
                           "give a new or empty folder")
        shutil.rmtree(folder)
    return folder


def interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the stack in the foreground; with --state, record it for `c2d up`/`down`."""
    data_root = Path(args.data).resolve() if args.data else None
    if data_root is not None and not data_root.is_dir():
        raise CliError(f"--data {args.data}: not a folder")
    workdir = fresh_workdir(Path(args.workdir) if args.workdir else home() / "stack")
    os.environ.setdefault("C2D_STORAGE_DIR", str(home() / "storage"))
    stack = make_stack(args, workdir, data_root)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with started(stack):
        state = {"pid": os.getpid(), "kubeconfig": str(stack.kubeconfig),
                 "api": stack.cluster.url, "namespace": stack.namespace,
                 "data_url": stack.data.url, "data_root": str(stack.data.root),
                 "storage": str(stack.storage_dir), "workdir": str(workdir),
                 "log": str(stack.log_path), "functions": stack.services,
                 "started": datetime.now(UTC).isoformat()}
        if args.state:
            write_atomic(Path(args.state), json.dumps(state, indent=2))
        say(f"embedded stack ready; kubeconfig {stack.kubeconfig}")
        try:
            while not stop.wait(3600):
                pass
        finally:
            if args.state:
                with suppress(OSError):
                    Path(args.state).unlink()
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    state = running_stack()
    if state:
        say(f"the embedded stack is already running (pid {state['pid']})")
        print(state["kubeconfig"])
        return EXIT_OK
    from devstack.stack import settings_environ

    try:  # a bad setting is reported here, not in a background log
        settings_module.load(settings_environ(os.environ, home() / "stack"))
    except settings_module.SettingsError as error:
        raise CliError(str(error)) from None
    if args.data is not None and not Path(args.data).is_dir():
        raise CliError(f"--data {args.data}: not a folder")
    if args.manifests is not None and not Path(args.manifests).is_dir():
        raise CliError(f"--manifests {args.manifests}: not a folder")
    ensure(home())
    state_path = state_file()
    with suppress(OSError):
        state_path.unlink()
    argv = [sys.executable, "-m", "devstack.cli", "serve", "--state", str(state_path),
            "--server", args.server]
    for flag, value in (("--manifests", args.manifests), ("--data", args.data),
                        ("--ping-period", args.ping_period), ("--workdir", args.workdir)):
        if value is not None:
            argv += [flag, str(Path(value).resolve()) if flag != "--ping-period" else str(value)]
    console = home() / "stack.out"
    with open(console, "wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,  # noqa: S603
                                   stderr=subprocess.STDOUT, start_new_session=True)
    write_atomic(pid_file(), str(process.pid))
    deadline = time.monotonic() + args.timeout
    while True:
        state = running_stack()
        if state:
            break
        if process.poll() is not None:
            raise CliError(f"the embedded stack exited ({process.returncode}): "
                           f"{last_line(console)} (see {console})")
        if time.monotonic() > deadline:
            os.kill(process.pid, signal.SIGTERM)
            raise CliError(f"the embedded stack did not start within {args.timeout:g} s "
                           f"(see {console})")
        time.sleep(0.1)
    say(f"embedded stack running (pid {state['pid']}); API {state['api']}, "
        f"datasets {state['data_url']} (serving {state['data_root']})")
    say(f"use it with: export KUBECONFIG={state['kubeconfig']}")
    print(state["kubeconfig"])
    return EXIT_OK


def last_line(path: Path) -> str:
    with suppress(OSError):
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return "no output"


def cmd_down(args: argparse.Namespace) -> int:
    try:
        pid = int(pid_file().read_text().strip())
    except (OSError, ValueError):
        say("the embedded stack is not running")
        return EXIT_OK
    if alive(pid) and running_stack():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while alive(pid) and not reaped(pid):
            if time.monotonic() > deadline:
                raise CliError(f"the embedded stack (pid {pid}) did not stop within "
                               f"{args.timeout:g} s")
            time.sleep(0.1)
        say(f"embedded stack stopped (pid {pid})")
    else:
        say("the embedded stack is not running (stale pidfile removed)")
    for path in (pid_file(), state_file()):
        with suppress(OSError):
            path.unlink()
    return EXIT_OK


def reaped(pid: int) -> bool:
    """True when `pid` is our exited child (a zombie until waited for)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def cmd_status(args: argparse.Namespace) -> int:
    if args.name is None:
        state = running_stack()
        if not state:
            raise CliError("the embedded stack is not running (start it with `c2d up`)")
        if args.output != "text":
            print(json.dumps(state, indent=2) if args.output == "json"
                  else yaml.safe_dump(state, sort_keys=False), end="\n" if args.output ==
                  "json" else "")
            return EXIT_OK
        print(table([[k, v if not isinstance(v, dict) else json.dumps(v)]
                     for k, v in state.items()], ["STACK", "VALUE"]))
        return EXIT_OK
    workflow = cluster_from(args).get(args.name)
    if args.output == "json":
        print(json.dumps(workflow, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(workflow, sort_keys=False), end="")
    else:
        print(describe(workflow))
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    cluster = cluster_from(args)
    body = read_workflow(args.workflow,
                         args.data_url or (lambda: embedded_data_url(args.workflow)))
    if args.name:
        body["metadata"]["name"] = args.name
        body["metadata"].pop("generateName", None)
        try:
            wf.validate(body)
        except wf.InvalidWorkflow as error:
            raise CliError(f"--name: {error}") from None
    created = cluster.create(body)
    print(created["metadata"]["name"])
    if not args.wait:
        return EXIT_OK
    workflow = follow(cluster, created["metadata"]["name"], args.timeout, False)
    if workflow is None:
        raise CliError(f"workflow {created['metadata']['name']} did not finish within "
                       f"{args.timeout:g} s", EXIT_TIMEOUT)
    return report(workflow)


def embedded_data_url(path: str) -> str | None:
    """`{{DATA_URL}}` for a workflow file when the running embedded stack serves its data."""
    state = running_stack()
    if not state:
        return None
    folder, root = data_folder(path), Path(state["data_root"])
    if not folder.is_relative_to(root):
        raise CliError(f"{folder} is not served by the embedded stack (it serves {root}); "
                       "start it with `c2d up --data DIR` or pass --data-url")
    relative = folder.relative_to(root).as_posix()
    return state["data_url"] if relative == "." else f"{state['data_url']}/{relative}"


def cmd_list(args: argparse.Namespace) -> int:
    cluster = cluster_from(args)
    rows = []
    for workflow in cluster.list():
        status = wf.status(workflow)
        rows.append([wf.name(workflow), status.get("phase", "-"), status.get("statusCode", 0),
                     status.get("statusText", "-"),
                     age(workflow["metadata"].get("creationTimestamp"))])
    print(table(rows, ["NAME", "PHASE", "CODE", "STATUS", "AGE"]))
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    workflow = cluster_from(args).get(args.name)
    if not wf.status(workflow).get("results"):
        phase = wf.status(workflow).get("phase", "not started")
        raise CliError(f"workflow {args.name} has no results yet (phase {phase})")
    if args.output == "json":
        print(json.dumps(wf.status(workflow)["results"], indent=2))
    else:
        print(results_table(workflow))
        for folder in result_folders(workflow):
            say(f"files: {folder}")
    unlisted = unlisted_results(workflow)
    if unlisted:
        say(unlisted)
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    cluster = cluster_from(args)
    workflow = cluster.get(args.name)
    text = stage_log(cluster, workflow, args.stage)
    if text is None:
        raise CliError(f"no {args.stage} log for workflow {args.name} yet")
    sys.stdout.write(text)
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    cluster = cluster_from(args)
    workflow = cluster.get(args.name)
    if wf.is_final(workflow):
        say(f"workflow {args.name} has already finished "
            f"({wf.status(workflow).get('phase')}); nothing to stop")
        return EXIT_OK
    cluster.request_stop(args.name)
    say(f"stop requested for workflow {args.name}")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    body = read_workflow(args.workflow, args.data_url)
    try:
        current = settings_module.load()
    except settings_module.SettingsError as error:
        raise CliError(str(error)) from None
    metadata = body["metadata"]
    metadata.setdefault("name", f"{metadata.pop('generateName', 'workflow-')}xxxxx")
    metadata["namespace"] = args.namespace or current.namespace
    metadata["uid"] = "00000000-0000-0000-0000-000000000000"  # set by the API server
    stages = [s for s in ("configure", "algorithm", "filter", "publish")
              if args.stage in (None, s)]
    documents = [m for stage in stages for m in manifests.for_stage(body, current, stage)]
    print(f"# manifests c2d creates for workflow {metadata['name']} "
          f"(stages: {', '.join(stages)})")
    print(yaml.safe_dump_all(documents, sort_keys=False), end="")
    return EXIT_OK


# ---------------------------------------------------------------- argument parsing


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", metavar="FILE",
                        help="kubeconfig to use (default: $KUBECONFIG, else the running "
                             "embedded stack, else ~/.kube/config)")
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c2d", description="Compute-to-Data workflows on Kubernetes, event-driven.",
        epilog="Run `c2d COMMAND --help` for each command's options.")
    parser.add_argument("--version", action="version", version=f"c2d {c2d_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], text: str,
            **kwargs: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, **kwargs)
        sub.set_defaults(handler=handler)
        return sub

    run = add("run", cmd_run, "Start the embedded stack, run one workflow, print its results.")
    run.add_argument("workflow", metavar="WORKFLOW.yaml")
    run.add_argument("--follow-logs", action="store_true",
                     help="stream the algorithm's log to stderr")
    run.add_argument("--timeout", type=positive, default=600, metavar="S",
                     help="give up after S seconds (exit 5; default 600)")
    run.add_argument("--keep", action="store_true",
                     help="keep the stack running after the workflow, until Ctrl-C")
    run.add_argument("--workdir", metavar="DIR",
                     help="the stack's folder (default: a new one under ~/.c2d/runs/)")
    stack_options(run)

    up = add("up", cmd_up, "Start the embedded stack in the background; print its kubeconfig.")
    up.add_argument("--data", metavar="DIR",
                    help="folder served for {{DATA_URL}} (default: the examples/ folder)")
    up.add_argument("--workdir", metavar="DIR", help="the stack's folder (default ~/.c2d/stack)")
    up.add_argument("--timeout", type=positive, default=60, metavar="S",
                    help="seconds to wait for it to be ready (default 60)")
    stack_options(up)

    down = add("down", cmd_down, "Stop the background embedded stack.")
    down.add_argument("--timeout", type=positive, default=60, metavar="S",
                      help="seconds to wait for it to stop (default 60)")

    serve = add("serve", cmd_serve, "Run the embedded stack in the foreground until Ctrl-C.")
    serve.add_argument("--data", metavar="DIR",
                       help="folder served for {{DATA_URL}} (default: the examples/ folder)")
    serve.add_argument("--workdir", metavar="DIR", help="the stack's folder (default "
                       "~/.c2d/stack; emptied at start)")
    serve.add_argument("--state", metavar="FILE", help=argparse.SUPPRESS)
    stack_options(serve)

    status = add("status", cmd_status,
                 "Without NAME: the embedded stack's state. With NAME: that workflow's status.")
    status.add_argument("name", nargs="?", metavar="NAME")
    status.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    cluster_options(status)

    submit = add("submit", cmd_submit, "Create a Workflow from a file; print its name.")
    submit.add_argument("workflow", metavar="WORKFLOW.yaml")
    submit.add_argument("--name", help="the workflow's name (default: generated)")
    submit.add_argument("--data-url", metavar="URL", help="the value of {{DATA_URL}} "
                        "(default: where the embedded stack serves the file's data/)")
    submit.add_argument("--wait", action="store_true",
                        help="show progress until it ends; exit code as `c2d run`")
    submit.add_argument("--timeout", type=positive, default=600, metavar="S",
                        help="with --wait, give up after S seconds (default 600)")
    cluster_options(submit)

    logs = add("logs", cmd_logs, "Print a workflow's log (the algorithm's by default).")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("--stage", choices=LOG_STAGES, default="algorithm")
    cluster_options(logs)

    stop = add("stop", cmd_stop, "Ask a running workflow to stop (its logs are still published).")
    stop.add_argument("name", metavar="NAME")
    cluster_options(stop)

    results = add("results", cmd_results, "Print a workflow's results (files and URLs).")
    results.add_argument("name", metavar="NAME")
    results.add_argument("-o", "--output", choices=("text", "json"), default="text")
    cluster_options(results)

    listing = add("list", cmd_list, "List the workflows of a namespace.")
    cluster_options(listing)

    render = add("render", cmd_render,
                 "Print the manifests the engine would create for a workflow (no cluster).")
    render.add_argument("workflow", metavar="WORKFLOW.yaml")
    render.add_argument("--stage", choices=("configure", "algorithm", "filter", "publish"),
                        help="only this stage's manifests")
    render.add_argument("--data-url", metavar="URL", default=RENDER_DATA_URL,
                        help=f"the value of {{{{DATA_URL}}}} (default {RENDER_DATA_URL})")
    render.add_argument("-n", "--namespace", help="namespace (default: C2D_NAMESPACE)")
    return parser


def api_message(error: ApiException) -> str:
    try:
        body = json.loads(error.body)
        return f"{body.get('message') or body}"
    except (TypeError, ValueError):
        return f"HTTP {error.status} {error.reason}"


def fail(message: str, code: int = EXIT_ERROR) -> int:
    """Report `message` as one line (a multi-line cause is joined with '; ')."""
    parts = [part.strip() for part in message.splitlines() if part.strip()]
    say("c2d: error: " + "; ".join(parts))
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CliError as error:
        return fail(str(error), error.code)
    except ApiException as error:
        return fail(f"the Kubernetes API answered {error.status}: {api_message(error)}")
    except (urllib3.exceptions.HTTPError, requests.ConnectionError, ConnectionError) as error:
        return fail(f"cannot reach the cluster: {error}")
    except KeyboardInterrupt:
        say("c2d: interrupted")
        return 130
    except Exception as error:  # a bug: still one line, unless asked for the traceback
        if os.environ.get("C2D_DEBUG"):
            raise
        return fail(f"unexpected {type(error).__name__}: {error} (C2D_DEBUG=1 shows more)")


if __name__ == "__main__":
    sys.exit(main())
