"""The whole embedded stack: Kubernetes, the four functions, eventing, storage, datasets.

::

    with Stack(Path("/tmp/c2d")) as stack:
        ...  # KUBECONFIG=stack.kubeconfig kubectl apply -f workflow.yaml

Started in this order, stopped in reverse:

1. an :class:`~devstack.cluster.EmbeddedCluster` (API server in a child process, Job
   controller, kubelet);
2. the engine's namespace (``C2D_NAMESPACE``) and the ``c2d-secrets`` Secret, made from
   the environment's ``OPERATOR_PRIVATE_KEY`` / ``AWS_*`` / ``IPFS_API_*`` keys;
3. the four functions (``c2d-configure``, ``c2d-algorithm``, ``c2d-publish``,
   ``c2d-notify``): in-process threaded WSGI servers by default, or one gunicorn
   process each (``server="gunicorn"``, as a Knative Service runs them);
4. the eventing read from the manifests folder (default ``knative/``): Broker,
   ApiServerSources and PingSource, delivering to those functions;
5. a dataset server: ``data_root`` served read-only over HTTP on 127.0.0.1, so that
   examples need no internet.

Settings come from the environment as on a cluster (every variable of
``shared.settings``); the stack only defaults ``C2D_STORAGE_DIR`` to
``<workdir>/storage`` (results land there as ``file://`` URLs) and ``LOG_LEVEL`` to
INFO. Every log line goes to ``<workdir>/stack.log``.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import requests
from kubernetes import client
from kubernetes.client.rest import ApiException
from werkzeug.serving import make_server

from devstack.cluster import EmbeddedCluster
from shared import logs
from shared import settings as settings_module
from shared.settings import Settings

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
KNATIVE_DIR = REPO_ROOT / "knative"
EXAMPLES_DIR = REPO_ROOT / "examples"
# Knative Service name -> the module holding `build(kubeconfig, config)` and `app`.
FUNCTIONS = {
    "c2d-configure": "functions.configure.app",
    "c2d-algorithm": "functions.algorithm.app",
    "c2d-publish": "functions.publish.app",
    "c2d-notify": "functions.notify.app",
}
SECRET_KEYS = ("OPERATOR_PRIVATE_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
               "IPFS_API_KEY", "IPFS_API_CLIENT")
SERVERS = ("thread", "gunicorn")
# As the image runs them (the Dockerfile's GUNICORN_CMD_ARGS; Knative's containerConcurrency).
GUNICORN_WORKERS, GUNICORN_THREADS = 4, 2
GUNICORN_CONFIG = "python:shared.gunicorn_config"
SETTING_VARIABLES = {variable for variable, _, _ in settings_module.SPEC.values()}
# The engine's variables are read from the environment; these are the same variables
# the pods and functions of a cluster get from c2d-config / c2d-secrets.


class StackError(RuntimeError):
    """The stack cannot start; the message says what and where to look."""


def gunicorn_argv(module: str, port: int, workers: int = GUNICORN_WORKERS,
                  threads: int = GUNICORN_THREADS) -> list[str]:
    """gunicorn serving `module`'s app on loopback `port`, with the image's config module."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return [str(gunicorn) if gunicorn.exists() else "gunicorn",
            # several masters on one machine: no shared control socket in ~/.gunicorn
            "--no-control-socket", "--config", GUNICORN_CONFIG,
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--threads", str(threads), "--graceful-timeout", "5", f"{module}:app"]


def settings_environ(environ: Mapping[str, str], workdir: Path) -> dict[str, str]:
    """The engine's variables from `environ`, with the embedded stack's defaults."""
    chosen = {k: v for k, v in environ.items() if k in SETTING_VARIABLES}
    chosen.setdefault("C2D_STORAGE_DIR", str(workdir / "storage"))
    chosen.setdefault("LOG_LEVEL", "INFO")
    return chosen


# ---------------------------------------------------------------- servers


class FunctionServer(Protocol):
    url: str

    def stop(self) -> None: ...


class ThreadServer:
    """A Flask app on a threaded WSGI server in this process (fast to start)."""

    def __init__(self, name: str, app: Any):
        self.name = name
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"function-{name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def free_port() -> int:
    """A port free now on 127.0.0.1 (for servers that cannot report the one they bound)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GunicornServer:
    """`gunicorn functions.<stage>.app:app` in its own process, as a Knative Service runs it."""

    def __init__(self, name: str, module: str, env: Mapping[str, str], log_path: Path,
                 timeout: float = 30.0):
        self.name = name
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = gunicorn_argv(module, port)
        with open(log_path, "ab") as out:
            self._process = subprocess.Popen(  # noqa: S603 - fixed argv
                argv, env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self._process.poll() is not None:
                raise StackError(f"gunicorn for {name} exited with {self._process.returncode}; "
                                 f"see {log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise StackError(f"gunicorn for {name} not healthy after {timeout}s; "
                                 f"see {log_path}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    @property
    def pid(self) -> int:
        return self._process.pid

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("dataset server: " + format, *args)


class DataServer:
    """`root` served read-only over HTTP on 127.0.0.1 (the examples' datasets)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        handler = partial(_QuietHandler, directory=str(self.root))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="dataset-server", daemon=True)
        self._thread.start()

    def url_for(self, folder: Path) -> str:
        """The URL of `folder`, which must be inside the served root."""
        folder = Path(folder).resolve()
        if not folder.is_relative_to(self.root):
            raise StackError(f"{folder} is not inside the served folder {self.root}")
        relative = folder.relative_to(self.root).as_posix()
        return self.url if relative == "." else f"{self.url}/{relative}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# ---------------------------------------------------------------- the stack


class Stack:
    """Everything `c2d run` needs, on loopback. Start with `start()` or `with`; not restartable."""

    def __init__(
        self,
        workdir: Path,
        *,
        environ: Mapping[str, str] | None = None,
        manifests_dir: Path = KNATIVE_DIR,
        data_root: Path | None = None,
        ping_period: float | None = None,
        server: str = "thread",
        persist: bool = False,
        kubelet_mode: str | None = None,
        audit: bool = False,
    ) -> None:
        if server not in SERVERS:
            raise StackError(f"server must be one of {', '.join(SERVERS)}, not {server!r}")
        if ping_period is not None and ping_period <= 0:
            raise StackError(f"ping period must be positive, not {ping_period}")
        self.workdir = Path(workdir).resolve()
        self.manifests_dir = Path(manifests_dir).resolve()
        if not self.manifests_dir.is_dir():
            raise StackError(f"manifests folder {self.manifests_dir} does not exist")
        self.data_root = Path(data_root).resolve() if data_root else EXAMPLES_DIR
        self.ping_period = ping_period
        self.server = server
        self.persist = persist
        self.kubelet_mode = kubelet_mode
        self.audit = audit
        source = os.environ if environ is None else environ
        self.env = settings_environ(source, self.workdir)
        try:
            self.settings: Settings = settings_module.load(self.env)
        except settings_module.SettingsError as error:
            raise StackError(str(error)) from None
        self.secrets = {k: source[k] for k in SECRET_KEYS if source.get(k)}
        self.namespace = self.settings.namespace
        self.storage_dir = Path(self.settings.storage_dir)
        self.log_path = self.workdir / "stack.log"
        self.cluster: EmbeddedCluster | None = None
        self.functions: dict[str, FunctionServer] = {}
        self.eventing: Any = None
        self.data: DataServer | None = None
        self._log_handler: logging.Handler | None = None

    # ------------------------------------------------------------ what users need

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def services(self) -> dict[str, str]:
        """Knative Service name -> the base URL of its function."""
        return {name: server.url for name, server in self.functions.items()}

    @property
    def data_url(self) -> str:
        if self.data is None:
            raise StackError("the stack is not started")
        return self.data.url

    def api_client(self) -> client.ApiClient:
        if self.cluster is None:
            raise StackError("the stack is not started")
        return self.cluster.api_client()

    def tick(self) -> None:
        """Fire the resync PingSource now (tests; `c2d` never needs it)."""
        if self.eventing is None:
            raise StackError("the stack is not started")
        self.eventing.fire_ping()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self._log_to_file()
        try:
            self.data = DataServer(self.data_root)
            self.cluster = EmbeddedCluster(self.workdir, persist=self.persist,
                                           kubelet_mode=self.kubelet_mode,
                                           namespace=self.namespace, apiserver_process=True,
                                           audit=self.audit)
            self.cluster.start()
            self._prepare_namespace()
            self._start_functions()
            self._start_eventing()
        except BaseException:
            self.stop()
            raise
        # This process runs the Broker, the sources, the kubelet and the Job controller.
        # A full collection over all they imported and built took 90-130 ms during a
        # benchmark batch, and each of them stood still meanwhile (on a cluster they are
        # separate programs). Set aside what exists now: collections then scan only
        # what the run creates (10-20 ms measured).
        gc.collect()
        gc.freeze()
        log.info("embedded stack ready: api %s, functions %s, datasets %s, storage %s",
                 self.cluster.url, self.services, self.data.url, self.storage_dir)
        return self

    def stop(self) -> None:
        """Stop everything started, newest first; safe to call twice."""
        _stop("eventing", self.eventing)
        # Together: each WSGI server takes up to its poll interval (0.5 s) to notice.
        stoppers = [threading.Thread(target=_stop, args=item)
                    for item in self.functions.items()]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        _stop("cluster", self.cluster)
        _stop("dataset server", self.data)
        self.eventing, self.cluster, self.data = None, None, None
        self.functions = {}
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ parts

    def _log_to_file(self) -> None:
        """JSON lines to stack.log; the functions' logs.setup() then keeps this handler."""
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(logs.JSONFormatter())
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(self.settings.log_level)
        for noisy in ("kubernetes", "urllib3", "werkzeug"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._log_handler = handler

    def _prepare_namespace(self) -> None:
        core = client.CoreV1Api(self.api_client())
        try:
            core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": self.namespace}})
        except ApiException as error:
            if error.status != 409:
                raise
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": self.settings.secrets_name,
                               "namespace": self.namespace,
                               "labels": {"app.kubernetes.io/part-of": "c2d"}},
                  "stringData": dict(self.secrets)}
        try:
            core.create_namespaced_secret(self.namespace, secret)
        except ApiException as error:
            if error.status != 409:  # a persisted stack keeps its Secret: refresh it
                raise
            core.replace_namespaced_secret(self.settings.secrets_name, self.namespace, secret)

    def _start_functions(self) -> None:
        kubeconfig = str(self.kubeconfig)
        for name, module in FUNCTIONS.items():
            if self.server == "gunicorn":
                env = {**self.env, **self.secrets, "KUBECONFIG": kubeconfig}
                self.functions[name] = GunicornServer(name, module, env,
                                                      self.workdir / f"{name}.log")
            else:
                app = import_module(module).build(kubeconfig, self.settings)
                self.functions[name] = ThreadServer(name, app)

    def _start_eventing(self) -> None:
        from devstack.eventing import start_eventing

        self.eventing = start_eventing(self.manifests_dir, str(self.kubeconfig), self.services,
                                       self.namespace, ping_period=self.ping_period)


def _stop(what: str, part: Any) -> None:
    if part is None:
        return
    try:
        part.stop()
    except Exception:  # keep stopping the rest; the log says what failed
        log.exception("stopping %s failed", what)

