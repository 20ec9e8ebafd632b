"""A test server speaking the Kubo RPC API (`/api/v0/add`, `/api/v0/cat`).

No Kubo binary can be installed here (the npm and PyPI packages download it or
embed a networked node without the RPC API), so this server builds real UnixFS
DAGs the way `ipfs add` does by default: CIDv0, dag-pb nodes, 256 KiB chunks,
no raw leaves, balanced layout of at most 174 links per node, and
`wrap-with-directory` as a dag-pb directory. CIDs are made with the
`multiformats` library; tests check well-known Kubo CIDs against this builder.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from multiformats import CID, multihash

from tests.pods.servers import Handler, Server

CHUNK = 256 * 1024
MAX_LINKS = 174
FILE, DIRECTORY = 2, 1


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def unixfs(kind: int, data: bytes | None = None, filesize: int | None = None,
           blocksizes: tuple[int, ...] = ()) -> bytes:
    out = _int_field(1, kind)
    if data:
        out += _bytes_field(2, data)
    if filesize is not None:
        out += _int_field(3, filesize)
    for size in blocksizes:
        out += _int_field(4, size)
    return out


def pb_node(links: list[tuple[bytes, str, int]], data: bytes) -> bytes:
    """A dag-pb node: links (field 2) come before data (field 1) in canonical order."""
    out = b""
    for cid, name, tsize in links:
        out += _bytes_field(2, _bytes_field(1, cid) + _bytes_field(2, name.encode())
                            + _int_field(3, tsize))
    return out + _bytes_field(1, data)


def cid_v0(block: bytes) -> CID:
    return CID("base58btc", 0, "dag-pb", multihash.digest(block, "sha2-256"))


class BlockStore:
    def __init__(self) -> None:
        self.blocks: dict[str, bytes] = {}

    def put(self, block: bytes) -> CID:
        cid = cid_v0(block)
        self.blocks[str(cid)] = block
        return cid

    def add_file(self, content: bytes) -> tuple[CID, int]:
        """(root CID, cumulative size) of a file, as `ipfs add` builds it."""
        level = []  # (cid, file bytes, cumulative size)
        for start in range(0, max(len(content), 1), CHUNK):
            chunk = content[start:start + CHUNK]
            block = pb_node([], unixfs(FILE, chunk, len(chunk)))
            level.append((self.put(block), len(chunk), len(block)))
        while len(level) > 1:
            parents = []
            for start in range(0, len(level), MAX_LINKS):
                group = level[start:start + MAX_LINKS]
                size = sum(child[1] for child in group)
                data = unixfs(FILE, None, size, tuple(child[1] for child in group))
                block = pb_node([(bytes(child[0]), "", child[2]) for child in group], data)
                parents.append((self.put(block), size,
                                len(block) + sum(child[2] for child in group)))
            level = parents
        return level[0][0], level[0][2]

    def wrap(self, name: str, cid: CID, cumulative: int) -> tuple[CID, int]:
        block = pb_node([(bytes(cid), name, cumulative)], unixfs(DIRECTORY))
        return self.put(block), len(block) + cumulative

    def read_file(self, cid: str) -> bytes:
        """The content of a file DAG, walking its links."""
        node = decode_node(self.blocks[cid])
        if not node["links"]:
            return node["data"].get(2, b"")
        return b"".join(self.read_file(str(CID.decode(link[0]))) for link in node["links"])

    def resolve(self, path: str) -> str:
        """`<cid>[/<name>...]` to the CID it names."""
        cid, *names = path.removeprefix("/ipfs/").strip("/").split("/")
        for name in names:
            links = {link[1]: link[0] for link in decode_node(self.blocks[cid])["links"]}
            cid = str(CID.decode(links[unquote(name)]))
        return cid


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _fields(data: bytes) -> list[tuple[int, Any]]:
    out, at = [], 0
    while at < len(data):
        key, at = _read_varint(data, at)
        if key & 7 == 2:
            size, at = _read_varint(data, at)
            out.append((key >> 3, data[at:at + size]))
            at += size
        else:
            value, at = _read_varint(data, at)
            out.append((key >> 3, value))
    return out


def decode_node(block: bytes) -> dict[str, Any]:
    links, data = [], {}
    for number, value in _fields(block):
        if number == 2:
            link = dict(_fields(value))
            links.append((link[1], link.get(2, b"").decode(), link.get(3, 0)))
        elif number == 1:
            data = dict(_fields(value))
    return {"links": links, "data": data}


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(file name, content) of each part of a multipart/form-data body."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts = []
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, content = part.partition(b"\r\n\r\n")
        name = ""
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("content-disposition") and 'filename="' in line:
                name = unquote(line.split('filename="', 1)[1].rsplit('"', 1)[0])
        parts.append((name, content.removesuffix(b"\r\n")))
    return parts


class KuboHandler(Handler):
    def do_POST(self) -> None:  # noqa: N802
        owner: KuboServer = self.owner
        parts = urlsplit(self.path)
        params = {key: values[0] for key, values in parse_qs(parts.query).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with owner.lock:
            owner.calls.append({"path": parts.path, "params": params,
                                "headers": dict(self.headers)})
            if owner.fail_next:
                owner.fail_next -= 1
                return self.send_bytes(b"busy", status=503)
        if parts.path == "/api/v0/add":
            lines = []
            for name, content in parse_multipart(body, self.headers["Content-Type"]):
                with owner.lock:
                    cid, size = owner.store.add_file(content)
                    lines.append({"Name": name, "Hash": str(cid), "Size": str(size)})
                    if params.get("wrap-with-directory") == "true":
                        cid, size = owner.store.wrap(name, cid, size)
                        lines.append({"Name": "", "Hash": str(cid), "Size": str(size)})
            self.send_bytes("".join(json.dumps(line) + "\n" for line in lines).encode(),
                            headers={"Content-Type": "application/json"})
        elif parts.path == "/api/v0/cat":
            try:
                with owner.lock:
                    data = owner.store.read_file(owner.store.resolve(params["arg"]))
            except (KeyError, ValueError):
                return self.send_json({"Message": "no link named", "Code": 0}, 500)
            self.send_bytes(data)
        else:
            self.send_json({"Message": "404 page not found"}, 404)


class KuboServer(Server):
    def __init__(self) -> None:
        super().__init__(KuboHandler)
        self.store = BlockStore()
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.fail_next = 0


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
