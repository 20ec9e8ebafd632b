"""End-to-end helpers: the `c2d` command as a subprocess, the Kubernetes API, a receiver.

The suite drives c2d only as a user would: through the `c2d` command and the
Kubernetes API of the cluster it prints (the official client).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from devstack.testing import wait_until
from shared import workflow as wf

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
OPERATOR_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
SETTING_PREFIXES = ("C2D_", "KUBECONFIG")


def c2d_command() -> list[str]:
    """The installed console script, else the module (same code either way)."""
    script = Path(sys.executable).with_name("c2d")
    return [str(script)] if script.exists() else [sys.executable, "-m", "devstack.cli"]


class C2D:
    """Runs `c2d` with its own C2D_HOME and environment (the engine's settings)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None):
        self.home = home
        base = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
        self.env = {**base, "C2D_HOME": str(home), **(env or {})}

    def __call__(self, *args: str, timeout: float = 120, check: bool = False,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*c2d_command(), *args], capture_output=True, text=True,
                              timeout=timeout, env={**self.env, **(env or {})}, cwd=REPO,
                              check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"c2d {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done


class Recorder:
    """Every status a namespace's Workflows go through, from a watch (nothing missed)."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str):
        self.custom, self.namespace = custom, namespace
        self.history: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.events: list[tuple[str, int, str]] = []  # (name, code, phase) in order
        self._lock = threading.Lock()
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._follow()
            except Exception:  # the server went away (teardown) or closed the stream
                if self._stopped.wait(0.1):
                    return

    def _follow(self) -> None:
        stream = self._watch.stream(self.custom.list_namespaced_custom_object, wf.GROUP,
                                    wf.VERSION, self.namespace, wf.PLURAL, timeout_seconds=600)
        for event in stream:
            obj = event["object"]
            status = obj.get("status") or {}
            entry = (int(status.get("statusCode") or 0), status.get("phase") or "")
            with self._lock:
                seen = self.history[obj["metadata"]["name"]]
                if not seen or seen[-1] != entry:
                    seen.append(entry)
                    self.events.append((obj["metadata"]["name"], *entry))

    def codes(self, name: str) -> list[int]:
        with self._lock:
            return [code for code, _ in self.history[name]]

    def last(self, name: str) -> tuple[int, str] | None:
        """The (statusCode, phase) seen last for workflow `name`."""
        with self._lock:
            return self.history[name][-1] if self.history[name] else None

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


class EmbeddedStack:
    """A background stack started with `c2d up` (stopped with `c2d down`)."""

    def __init__(self, home: Path, site: Path, env: dict[str, str] | None = None,
                 up_args: tuple[str, ...] = ()):
        self.c2d = C2D(home, env)
        self.site = site
        up = self.c2d("up", "--data", str(site), *up_args, check=True, timeout=90)
        self.kubeconfig = up.stdout.strip()
        self.c2d.env["KUBECONFIG"] = self.kubeconfig
        self.api = config.new_client_from_config(config_file=self.kubeconfig)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.recorder = Recorder(self.custom, "default")

    def stop(self) -> None:
        self.recorder.stop()
        self.api.close()
        pid = json.loads((self.c2d.home / "stack.json").read_text())["pid"]
        down = self.c2d("down", timeout=90)
        assert down.returncode == 0, down.stderr
        assert not Path(f"/proc/{pid}").exists(), f"the stack (pid {pid}) is still running"

    # ------------------------------------------------------------ workflows

    def example(self, name: str, folder: str | None = None) -> Path:
        """examples/<name> copied under the served folder; its workflow file."""
        target = self.site / (folder or name)
        shutil.copytree(EXAMPLES / name, target, dirs_exist_ok=True)
        return target / "workflow.yaml"

    def workflow_file(self, folder: str, stage: dict[str, Any], files: dict[str, str]
                      | None = None) -> Path:
        """A workflow under the served folder with this stage body and data files."""
        target = self.site / folder
        (target / "data").mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            (target / "data" / name).write_text(text)
        body = {"apiVersion": wf.API_VERSION, "kind": wf.KIND,
                "metadata": {"generateName": f"{folder}-"},
                "spec": {"secret": f"{folder}-secret",
                         "metadata": {"chainId": 8996, "stages": [{"index": 0, **stage}]}}}
        path = target / "workflow.yaml"
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path

    def submit(self, path: Path, *args: str) -> str:
        done = self.c2d("submit", str(path), *args, check=True)
        return done.stdout.strip()

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(wf.GROUP, wf.VERSION, "default",
                                                        wf.PLURAL, name)

    def wait_final(self, name: str, timeout: float = 60) -> dict:
        def final() -> dict | None:
            found = self.get(name)
            return found if wf.is_final(found) else None

        found = wait_until(final, timeout, what=f"workflow {name} to finish")
        # The recorder's watch may trail the read above by a few milliseconds.
        status = wf.status(found)
        last = (int(status.get("statusCode") or 0), status.get("phase") or "")
        wait_until(lambda: self.recorder.last(name) == last, 10,
                   what=f"the recorder to see workflow {name} finish")
        return found

    def wait_code(self, name: str, code: int, timeout: float = 30) -> dict:
        return wait_until(lambda: code in self.recorder.codes(name), timeout,
                          what=f"workflow {name} to reach status {code}")


def results_of(workflow: dict, kind: str | None = None) -> list[dict]:
    return [r for r in wf.status(workflow).get("results") or []
            if kind is None or r["type"] == kind]


def read_result(result: dict) -> str:
    url = result["url"]
    assert url.startswith("file://"), url
    return Path(url.removeprefix("file://")).read_text()


class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    data = json.loads(body) if body else None
                except ValueError:
                    data = body.decode(errors="replace")
                received.append((self.path, {k.lower(): v for k, v in self.headers.items()},
                                 data))
                self.send_response(202)  # no reply: the Broker must not see a body
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def posts(self, path: str | None = None) -> list[tuple[str, dict[str, str], Any]]:
        return [p for p in list(self.received) if path is None or p[0] == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
