"""Real HTTP servers on 127.0.0.1 for the pod tests: datasets, Aquarius and an Ocean Provider.

The provider checks downloads the way Ocean's provider does (validate_download_signature
and verify_signature): the nonce must be numeric and above the last one stored for the
address, the signature must recover, from keccak(prefix32 + keccak(did + nonce)), to
`consumerAddress`, and that address must be the compute environment's consumer.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from eth_keys import keys
from eth_utils import keccak, to_checksum_address


class Server:
    """A ThreadingHTTPServer on a free loopback port, run in a thread until stop()."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # handlers reach their server's state through this
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def start(self) -> Server:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner

    def send_bytes(self, data: bytes, status: int = 200, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, value: Any, status: int = 200) -> None:
        self.send_bytes(json.dumps(value).encode(), status,
                        {"Content-Type": "application/json"})

    def reset(self) -> None:
        """Close the connection with a TCP RST, as a crashed server would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.connection.close()


class DatasetHandler(Handler):
    """/files/<name>, /big (sendfile), /missing, /flaky/<name>, /slow, /redirect/<name>,
    /disposition/<name>, /error500, /short (closes before its Content-Length),
    /gzip/<name> (Content-Encoding: gzip)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        owner: DatasetServer = self.owner
        owner.requests.append(self.path)
        path = urlsplit(self.path).path
        kind, _, name = path.strip("/").partition("/")
        if kind == "files" and name in owner.files:
            self.send_bytes(owner.files[name])
        elif kind == "big":
            self.send_file(owner.big_file)
        elif kind == "flaky":
            owner.hits[path] += 1
            if owner.hits[path] <= 2:
                self.reset()
            else:
                self.send_bytes(owner.files[name])
        elif kind == "short":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
        elif kind == "gzip":
            self.send_bytes(gzip.compress(owner.files[name]),
                            headers={"Content-Encoding": "gzip"})
        elif kind == "error500":
            self.send_bytes(b"down", status=503)
        elif kind == "slow":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            owner.stopping.wait(30)  # silent until the test is over
        elif kind == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/files/{name}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "redirect-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "disposition":
            self.send_bytes(owner.files[name], headers={
                "Content-Disposition": 'attachment; filename="../../etc/x"'})
        else:
            self.send_bytes(b"not found", status=404)

    def send_file(self, path: Path) -> None:
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with path.open("rb") as stream:
            self.connection.sendfile(stream)


class DatasetServer(Server):
    def __init__(self, files: dict[str, bytes], big_file: Path | None = None):
        super().__init__(DatasetHandler)
        self.files = files
        self.big_file = big_file
        self.requests: list[str] = []
        self.hits: Counter[str] = Counter()


def provider_recover(did: str, nonce: str, signature: str) -> str:
    """The signer as Ocean's provider computes it (verify_signature)."""
    message_hash = keccak(text=f"{did}{nonce}")
    signable = keccak(b"\x19Ethereum Signed Message:\n32" + message_hash)
    raw = bytes.fromhex(signature.removeprefix("0x"))
    if raw[64] in (27, 28):
        raw = raw[:64] + bytes([raw[64] - 27])
    return keys.Signature(signature_bytes=raw).recover_public_key_from_msg_hash(
        signable).to_checksum_address()


class OceanHandler(Handler):
    """Aquarius under /api/aquarius, a provider under /provider."""

    def do_GET(self) -> None:  # noqa: N802
        owner: OceanServer = self.owner
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        if parts.path.startswith("/api/aquarius/assets/ddo/"):
            did = unquote(parts.path.rsplit("/", 1)[1])
            ddo = owner.ddos.get(did)
            self.send_json(ddo, 200) if ddo else self.send_json({"error": "not found"}, 404)
        elif parts.path == "/provider":
            self.send_json({"serviceEndpoints": {
                "download": ["GET", "/api/services/download"],
                "fileinfo": ["POST", "/api/services/fileinfo"],
                "nonce": ["GET", "/api/services/nonce"]}})
        elif parts.path == "/provider/api/services/nonce":
            self.send_json({"nonce": owner.nonces.get(query.get("userAddress", ""), 0)})
        elif parts.path == "/provider/api/services/download":
            self.download(owner, query)
        else:
            self.send_json({"error": "not found"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        owner: OceanServer = self.owner
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if urlsplit(self.path).path == "/provider/api/services/fileinfo":
            files = owner.files.get((body.get("did"), body.get("serviceId")))
            if files is None:
                self.send_json({"error": "Cannot resolve DID"}, 400)
            else:
                self.send_json([{"index": i, "valid": True, "type": "url"}
                                for i in range(len(files))])
        else:
            self.send_json({"error": "not found"}, 404)

    def download(self, owner: OceanServer, query: dict[str, str]) -> None:
        required = ("documentId", "serviceId", "consumerAddress", "transferTxId", "fileIndex",
                    "nonce", "signature")
        missing = [name for name in required if not query.get(name)]
        if missing:
            return self.send_json({"error": f"missing {missing}"}, 400)
        address, nonce = query["consumerAddress"], query["nonce"]
        if not nonce.isdigit() or int(nonce) <= owner.nonces.get(address, 0):
            return self.send_json({"error": "Invalid signature expected nonce"}, 400)
        try:
            signer = provider_recover(query["documentId"], nonce, query["signature"])
        except Exception as error:
            return self.send_json({"error": f"Invalid signature: {error}"}, 400)
        if signer != to_checksum_address(address):
            owner.refused.append(signer)
            return self.send_json({"error": "Invalid signature provided."}, 400)
        if signer not in owner.consumers:
            return self.send_json({"error": "not an access service"}, 400)
        if query["transferTxId"] != owner.tx_ids.get(query["documentId"]):
            return self.send_json({"error": "Order could not be validated"}, 400)
        owner.nonces[address] = int(nonce)
        files = owner.files.get((query["documentId"], query["serviceId"]), [])
        index = int(query["fileIndex"])
        if index >= len(files):
            return self.send_json({"error": f"No such fileIndex {index}"}, 400)
        owner.downloads.append({"did": query["documentId"], "fileIndex": index,
                                "userdata": query.get("userdata")})
        self.send_bytes(files[index])


class OceanServer(Server):
    """Holds DDOs, the files behind each (did, serviceId), orders and nonces."""

    def __init__(self, consumers: set[str]):
        super().__init__(OceanHandler)
        self.consumers = consumers
        self.ddos: dict[str, dict] = {}
        self.files: dict[tuple[str, str], list[bytes]] = {}
        self.tx_ids: dict[str, str] = {}
        self.nonces: dict[str, int] = {}
        self.downloads: list[dict] = []
        self.refused: list[str] = []

    def publish(self, did: str, service_id: str, files: list[bytes], tx_id: str) -> None:
        """An asset with one compute service served by this provider."""
        self.ddos[did] = {"@context": ["https://w3id.org/did/v1"], "id": did, "version": "4.1.0",
                          "chainId": 8996, "metadata": {"name": did, "type": "dataset"},
                          "services": [{"id": service_id, "type": "compute",
                                        "files": "0xencrypted", "datatokenAddress": "0x0",
                                        "serviceEndpoint": f"{self.url}/provider"}]}
        self.files[(did, service_id)] = files
        self.tx_ids[did] = tx_id
