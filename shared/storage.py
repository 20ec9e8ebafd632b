"""Where results are stored: IPFS, S3 or a local folder, and the result manifest.

Chosen as the original pod-publishing does: IPFS when IPFS_OUTPUT is set, else
S3 when AWS_BUCKET_OUTPUT is set, else the local folder C2D_STORAGE_DIR (the
embedded stack). Admin logs go to IPFS_ADMINLOGS / AWS_BUCKET_ADMINLOGS when set,
else beside the outputs. Keys are `<jobId>/outputs/<path>`, `<jobId>/logs/...`,
`<jobId>/adminlogs/...`; the manifest `<jobId>/results.json` lists every result
and marks the job's folder for :func:`delete_expired`.

S3 endpoints other than AWS come from boto3's own AWS_ENDPOINT_URL variable.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

import requests

from shared.settings import Settings

RESULT_TYPES = ("output", "algorithmLog", "configurationLog", "filteringLog", "publishLog")
RESULT_FIELDS = ("index", "filename", "filesize", "type", "url")
MANIFEST = "results.json"
CHUNK = 1 << 20
MULTIPART_THRESHOLD = 8 << 20  # boto3's default, named so tests can rely on it
IPFS_TIMEOUT = (10, 300)


class StorageError(RuntimeError):
    """Storing or reading results failed; the text names the file, never a credential."""


class Backend(Protocol):
    def upload(self, source: Path, key: str) -> str:
        """Store the file `source` under `key`; return its URL."""

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store `data` under `key`; return its URL."""

    def read(self, url: str) -> bytes:
        """The content at a URL this backend returned."""


class LocalBackend:
    """A folder; URLs are `file://` URLs."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise StorageError(f"key {key!r} would leave the storage folder")
        return path

    def upload(self, source: Path, key: str) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target, follow_symlinks=False)
        return target.as_uri()

    def put_bytes(self, key: str, data: bytes) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target.as_uri()

    def read(self, url: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme != "file":
            raise StorageError(f"{url} is not a file:// URL of the local storage")
        path = Path(unquote(parts.path)).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"{url} is outside the local storage {self.root}")
        return path.read_bytes()

    def expired_jobs(self, cutoff: float) -> Iterator[str]:
        for manifest in self.root.glob(f"*/{MANIFEST}"):
            if manifest.stat().st_mtime < cutoff:
                yield manifest.parent.name

    def delete_job(self, job_id: str) -> None:
        shutil.rmtree(self._path(job_id), ignore_errors=True)


class S3Backend:
    """An S3 bucket through boto3 (multipart above 8 MiB); URLs are path-style HTTPS."""

    def __init__(self, bucket: str, settings: Settings):
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.client = boto3.client(
            "s3", region_name=settings.aws_region or None,
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=settings.aws_secret_access_key)
        self.transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                       multipart_chunksize=MULTIPART_THRESHOLD)
        self.base = f"{self.client.meta.endpoint_url.rstrip('/')}/{bucket}/"

    def upload(self, source: Path, key: str) -> str:
        self.client.upload_file(str(source), self.bucket, key, Config=self.transfer)
        return self.base + quote(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data,
                               ContentType="application/json")
        return self.base + quote(key)

    def read(self, url: str) -> bytes:
        if not url.startswith(self.base):
            raise StorageError(f"{url} is not in the bucket {self.bucket}")
        key = unquote(url[len(self.base):])
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def expired_jobs(self, cutoff: float) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Delimiter="/")
        for page in pages:
            for prefix in page.get("CommonPrefixes", []):
                job_id = prefix["Prefix"].rstrip("/")
                try:
                    head = self.client.head_object(Bucket=self.bucket,
                                                   Key=f"{job_id}/{MANIFEST}")
                except self.client.exceptions.ClientError:
                    continue  # not a c2d job folder: never touched
                if head["LastModified"].timestamp() < cutoff:
                    yield job_id

    def delete_job(self, job_id: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{job_id}/")
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


class _Multipart:
    """A one-file multipart/form-data body streamed from disk, with a known length."""

    def __init__(self, source: Path, name: str):
        self.source = source
        self.boundary = f"c2d-{time.time_ns()}"
        self.head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                     f"filename=\"{quote(name, safe='')}\"\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n").encode()
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.size = source.stat().st_size

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with self.source.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                yield chunk
        yield self.tail


class IpfsBackend:
    """A Kubo RPC API (`/api/v0/add`, wrapped in a directory to keep the file name).

    URLs are `<prefix><cid>/<name>` with IPFS_OUTPUT_PREFIX, else
    `<api>/ipfs/<cid>/<name>`, as the original.
    """

    def __init__(self, api: str, prefix: str | None, settings: Settings):
        self.api = api.rstrip("/")
        self.prefix = (prefix if prefix.endswith("/") else prefix + "/") if prefix else (
            f"{self.api}/ipfs/")
        self.headers = {}
        if settings.ipfs_api_key:
            self.headers["X-API-KEY"] = settings.ipfs_api_key
        if settings.ipfs_api_client:
            self.headers["CLIENT-ID"] = settings.ipfs_api_client
        self.params = {"wrap-with-directory": "true", "pin": "true"}
        expiry = (settings.ipfs_expiry_time or "").strip()
        if expiry not in ("", "0"):
            # ipfs-cluster wants a Go duration; a bare number means seconds.
            self.params["expire-in"] = f"{expiry}s" if expiry.isdigit() else expiry

    def _add(self, body: Any, content_type: str, key: str) -> str:
        name = key.rsplit("/", 1)[-1]
        headers = {**self.headers, "Content-Type": content_type}
        last_error = ""
        for attempt in range(3):
            try:
                response = requests.post(f"{self.api}/api/v0/add", params=self.params,
                                         data=body, headers=headers, timeout=IPFS_TIMEOUT)
                if response.status_code < 500:
                    break
                last_error = f"HTTP {response.status_code}"
            except requests.ConnectionError:
                last_error = "connection failed"
            if attempt < 2:
                time.sleep(0.5 * 2 ** attempt)
        else:
            raise StorageError(f"IPFS add of {key} failed: {last_error}")
        if response.status_code != 200:
            raise StorageError(f"IPFS add of {key} failed: HTTP {response.status_code} "
                               f"{response.text[:200]}")
        for line in response.text.splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("Name") == "" and entry.get("Hash"):  # the wrapping directory
                return f"{self.prefix}{entry['Hash']}/{quote(name)}"
        raise StorageError(f"IPFS add of {key} returned no directory hash")

    def upload(self, source: Path, key: str) -> str:
        body = _Multipart(source, key.rsplit("/", 1)[-1])
        return self._add(body, body.content_type, key)

    def put_bytes(self, key: str, data: bytes) -> str:
        name = key.rsplit("/", 1)[-1]
        boundary = f"c2d-{time.time_ns()}"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"{quote(name, safe='')}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + (
                f"\r\n--{boundary}--\r\n").encode()
        return self._add(body, f"multipart/form-data; boundary={boundary}", key)

    def read(self, url: str) -> bytes:
        if not url.startswith(self.prefix):
            raise StorageError(f"{url} does not start with the IPFS prefix {self.prefix}")
        path = url[len(self.prefix):]
        response = requests.post(f"{self.api}/api/v0/cat", params={"arg": f"/ipfs/{path}"},
                                 headers=self.headers, timeout=IPFS_TIMEOUT)
        if response.status_code != 200:
            raise StorageError(f"IPFS cat of {path} failed: HTTP {response.status_code}")
        return response.content


def output_backend(settings: Settings) -> Backend:
    """Where outputs, the algorithm log and the manifest go."""
    if settings.ipfs_output:
        return IpfsBackend(settings.ipfs_output, settings.ipfs_output_prefix, settings)
    if settings.aws_bucket_output:
        return S3Backend(settings.aws_bucket_output, settings)
    return LocalBackend(settings.storage_dir)


def adminlogs_backend(settings: Settings) -> Backend:
    """Where configure, filter and publish logs go."""
    if settings.ipfs_adminlogs:
        return IpfsBackend(settings.ipfs_adminlogs, settings.ipfs_adminlogs_prefix, settings)
    if settings.aws_bucket_adminlogs:
        return S3Backend(settings.aws_bucket_adminlogs, settings)
    return output_backend(settings)


def check_results(results: Any) -> list[dict[str, Any]]:
    """`results` if it is a list of well-formed result entries; StorageError otherwise."""
    if not isinstance(results, list):
        raise StorageError("the result list is not a list")
    for number, entry in enumerate(results):
        if not isinstance(entry, dict) or any(field not in entry for field in RESULT_FIELDS):
            raise StorageError(f"result {number} lacks one of {', '.join(RESULT_FIELDS)}")
        if entry["type"] not in RESULT_TYPES:
            raise StorageError(f"result {number} has the unknown type {entry['type']!r}")
    return results


def manifest_bytes(job_id: str, results: list[dict[str, Any]]) -> bytes:
    return json.dumps({"jobId": job_id, "results": results}, indent=1).encode()


def _termination(termination_message: str) -> dict[str, Any]:
    try:
        message = json.loads(termination_message)
    except (TypeError, ValueError):
        raise StorageError("the publish termination message is not JSON") from None
    if not isinstance(message, dict):
        raise StorageError("the publish termination message is not a JSON object")
    return message


def reported_manifest(termination_message: str) -> str | None:
    """The URL of the result manifest a publish pod says it wrote, if any."""
    try:
        url = _termination(termination_message).get("manifest")
    except StorageError:
        return None
    return url if isinstance(url, str) else None


def read_results(termination_message: str, settings: Settings) -> list[dict[str, Any]]:
    """The full result list from a publish pod's termination message.

    Inline `results` are returned as they are; a `manifest` URL is read from the
    output storage. A message without either (a pod that failed before
    uploading anything) gives an empty list unless it claims success.
    """
    message = _termination(termination_message)
    if "results" in message:
        return check_results(message["results"])
    if "manifest" in message:
        url = message["manifest"]
        try:
            manifest = json.loads(output_backend(settings).read(url))
        except StorageError:
            raise
        except Exception as error:
            raise StorageError(f"cannot read the result manifest {url}: "
                               f"{type(error).__name__}: {error}") from None
        results = check_results(manifest.get("results") if isinstance(manifest, dict) else None)
        if "count" in message and message["count"] != len(results):
            raise StorageError(f"the result manifest {url} lists {len(results)} results, "
                               f"the pod reported {message['count']}")
        return results
    if message.get("exitCode") == 0:
        raise StorageError("the publish termination message has neither results nor manifest")
    return []


def delete_expired(settings: Settings, now: datetime | None = None) -> list[str]:
    """Remove the stored results of jobs published over STORAGE_EXPIRY hours ago.

    Only folders holding a c2d manifest are touched. IPFS content is left to its
    own expiry (`expire-in`). Returns the job ids removed. 0 hours = keep forever.
    """
    if settings.storage_expiry <= 0 or settings.ipfs_output:
        return []
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(hours=settings.storage_expiry)).timestamp()
    outputs = output_backend(settings)
    admin = adminlogs_backend(settings)
    removed = []
    for job_id in list(outputs.expired_jobs(cutoff)):
        outputs.delete_job(job_id)
        if admin is not outputs and hasattr(admin, "delete_job"):
            admin.delete_job(job_id)
        removed.append(job_id)
    return removed
