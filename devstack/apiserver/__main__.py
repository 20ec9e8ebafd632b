"""``python -m devstack.apiserver``: run the embedded API server in the foreground."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from pathlib import Path

from . import APIServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.apiserver",
                                     description="Embedded Kubernetes API server (c2d devstack)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--data-dir", type=Path, help="persist objects in this folder")
    parser.add_argument("--log-dir", type=Path, help="pod logs: <dir>/<ns>/<pod>/<container>.log")
    parser.add_argument("--crd", type=Path, action="append", default=[],
                        help="CRD file to apply at start (repeatable)")
    parser.add_argument("--kubeconfig", type=Path, help="also write a kubeconfig here")
    parser.add_argument("--audit-log", type=Path,
                        help="append an audit.k8s.io/v1 Event per write request here")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="stop when standard input closes (a parent that started it died)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = APIServer(crd_files=args.crd, data_dir=args.data_dir, log_dir=args.log_dir,
                       host=args.host, port=args.port, audit_log=args.audit_log)
    # Handlers first: whoever reads the URL may signal us at once.
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    if args.exit_on_stdin_eof:
        threading.Thread(target=_set_at_eof, args=(done,), name="stdin-watch",
                         daemon=True).start()
    url = server.start()
    set_aside_survivors()
    if args.kubeconfig:
        from devstack.kubeconfig import write_kubeconfig
        write_kubeconfig(url, args.kubeconfig)
    print(url, flush=True)
    done.wait()
    server.stop()
    return 0


def set_aside_survivors() -> None:
    """Keep full garbage collections short: set aside what start-up built and, after
    each full collection, what survived it (`gc.freeze()`).

    The stored objects are long-lived JSON trees, and a full collection walked all
    of them while every request waited: 22, 66, 121, 137, 160 and then 183 ms in
    one benchmark run, as the store grew; a pause among a burst's first admissions
    delays each of them as much. With this, 17-37 ms (one of 200 ms remained, after
    the batch, not explained). Frozen objects are still freed when their last
    reference goes; only a reference cycle among them would stay, and the store's
    objects have none.
    """
    gc.collect()
    gc.freeze()
    gc.callbacks.append(_freeze_after_full_collection)


def _freeze_after_full_collection(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


def _set_at_eof(done: threading.Event) -> None:
    while sys.stdin.buffer.read(4096):
        pass
    done.set()


if __name__ == "__main__":
    raise SystemExit(main())
