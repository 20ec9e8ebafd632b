"""Streaming HTTP downloads with bounded memory, timeouts, retries and a disk budget.

File names are always chosen by the caller: nothing the server says
(Content-Disposition, redirects) decides where bytes land. Error texts name the
host only, never the query string, which may carry a signature or a token.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from urllib3.exceptions import ReadTimeoutError

from shared.pod import redact_url

# The body is read 1 MiB at a time and written 32 KiB at a time. In a pod with a
# memory limit, what is written is handed to the disk and dropped from the page
# cache a window behind (Limits.cache_behind): the cache a download fills is
# charged to the pod, and a dataset larger than the limit must not meet it. A pod
# without a limit keeps its cache, as curl does: dropping it makes the download
# wait for the disk (a GiB took 1.4-2.7 s that way against 1.0-1.5 s, on a disk
# that writes 300 MB/s). Measurements: benchmarks/README.md.
CHUNK = 1 << 20
WRITE_SIZE = 1 << 15
ZEROS = bytes(WRITE_SIZE)
MAX_JSON_BYTES = 16 << 20
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
ALLOWED_SCHEMES = ("http://", "https://")


class FetchError(Exception):
    """A download failed; `transient` failures are worth another try."""

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


@dataclass(frozen=True)
class Limits:
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # longest silence between two reads, not a total
    retries: int = 3
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    max_redirects: int = 5
    # Bytes of a download kept in the page cache, up to twice; None keeps it all.
    cache_behind: int | None = None


class DiskBudget:
    """Bytes the configure pod may still write (diskGB of the data volume)."""

    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.used = 0

    def take(self, size: int) -> None:
        if self.used + size > self.limit:
            raise FetchError(f"disk limit exceeded: more than {self.limit} bytes (diskGB) needed")
        self.used += size

    def give_back(self, size: int) -> None:
        self.used -= size


def _host(url: str) -> str:
    return redact_url(url).split("://", 1)[-1].split("/", 1)[0]


def _describe(error: Exception, url: str) -> FetchError:
    """A FetchError from a requests exception, without the URL's query."""
    host = _host(url)
    if isinstance(error, requests.exceptions.InvalidSchema | requests.exceptions.InvalidURL |
                  requests.exceptions.MissingSchema):
        return FetchError(f"invalid or unsupported URL for {redact_url(url)}")
    if isinstance(error, requests.exceptions.TooManyRedirects):
        return FetchError(f"too many redirects from {host}")
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return FetchError(f"timed out connecting to {host}", transient=True)
    cause = error.args[0] if error.args else None  # a stalled body arrives wrapped
    if isinstance(error, requests.exceptions.Timeout | TimeoutError) \
            or isinstance(cause, ReadTimeoutError):
        return FetchError(f"timed out waiting for data from {host}", transient=True)
    if isinstance(error, requests.exceptions.ContentDecodingError):
        return FetchError(f"undecodable content from {host}")
    if isinstance(error, requests.exceptions.ChunkedEncodingError | http.client.HTTPException
                  | ConnectionError):  # the last two: the reused-buffer read in _pieces
        return FetchError(f"connection to {host} broke during the transfer", transient=True)
    if isinstance(error, requests.exceptions.ConnectionError):
        return FetchError(f"connection to {host} failed or was reset", transient=True)
    return FetchError(f"request to {host} failed ({type(error).__name__})")


def _pieces(response: requests.Response, url: str) -> Iterator[memoryview]:
    """The body in pieces of at most CHUNK bytes, each valid until the next one is read.

    A body sent as is is read straight into one reused buffer: through iter_content
    (a new object per 64 KiB piece) a GiB cost 1.0-1.8 s of CPU on the benchmark's
    VM and took 1.4-2.4 s, this way 0.6 s of CPU and 0.9-1.4 s (curl: 1.5-1.6 s on
    the same server). A body with a Content-Encoding goes through iter_content,
    which decodes it.
    """
    body = getattr(response.raw, "_fp", None)  # http.client's response: readinto
    if response.headers.get("Content-Encoding", "identity").lower() != "identity" \
            or not hasattr(body, "readinto"):
        for chunk in response.iter_content(CHUNK):
            yield memoryview(chunk)
        return
    buffer = memoryview(bytearray(CHUNK))
    while True:
        try:
            size = body.readinto(buffer)
        except (http.client.HTTPException, OSError) as error:  # a short body included
            raise _describe(error, url) from None
        if not size:
            break
        yield buffer[:size]
    if body.length:  # http.client ends a short body quietly: what it still expected
        raise _describe(http.client.IncompleteRead(b"", body.length), url)


def _check_status(response: requests.Response, url: str) -> None:
    if response.status_code >= 400:
        raise FetchError(f"HTTP {response.status_code} from {_host(url)}",
                         transient=response.status_code in TRANSIENT_STATUS)


def _write_or_skip(fd: int, piece: memoryview) -> None:
    """Write `piece` at the file's offset, or seek over it when it is all zeros."""
    if ZEROS.startswith(piece):
        os.lseek(fd, len(piece), os.SEEK_CUR)
        return
    while piece:
        piece = piece[os.write(fd, piece):]


def _drop_cached(fd: int, length: int) -> None:
    """Start writing the file's first `length` bytes to disk and drop them from the
    page cache. Pages still dirty stay cached: the next call, a window later, drops
    them."""
    if hasattr(os, "posix_fadvise"):  # Linux, where pods run
        with contextlib.suppress(OSError):  # advice: a file system may ignore or refuse it
            os.posix_fadvise(fd, 0, length, os.POSIX_FADV_DONTNEED)


# Where the pod's container finds its memory limit: cgroup v2, then v1.
MEMORY_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as 2^63 rounded down to a page


def memory_limit() -> int | None:
    """The container's memory limit in bytes; None without one, or when no cgroup says."""
    for name in MEMORY_LIMIT_FILES:
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        return int(text) if text.isdigit() and int(text) < NO_LIMIT else None
    return None


def cache_window(limit: int | None) -> int | None:
    """`Limits.cache_behind` under a memory limit of `limit` bytes: an eighth of it (the
    cache then holds at most a quarter), 64 MiB under the Jobs' 512 MiB; None without one."""
    return None if limit is None else max(limit // 8, CHUNK)


class Fetcher:
    """Downloads into files and fetches small JSON documents, with retries."""

    def __init__(self, limits: Limits, budget: DiskBudget, logger: logging.Logger):
        self.limits = limits
        self.budget = budget
        self.log = logger
        self.session = requests.Session()
        self.session.max_redirects = limits.max_redirects

    def close(self) -> None:
        self.session.close()

    def _retrying(self, what: str, attempt: Callable[[], Any]) -> Any:
        for number in range(self.limits.retries + 1):
            try:
                return attempt()
            except FetchError as error:
                if not error.transient or number == self.limits.retries:
                    raise
                delay = self.limits.backoff * 2 ** number
                self.log.warning("%s: %s; retrying in %.1f s", what, error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _get(self, url: str, **kwargs: Any) -> requests.Response:
        if not url.lower().startswith(ALLOWED_SCHEMES):
            raise FetchError(f"only http:// and https:// URLs are fetched, not {redact_url(url)}")
        method = kwargs.pop("method", "GET")
        try:
            response = self.session.request(
                method, url, stream=True,
                timeout=(self.limits.connect_timeout, self.limits.read_timeout), **kwargs)
        except requests.RequestException as error:
            raise _describe(error, url) from None
        try:
            _check_status(response, url)
        except FetchError:
            response.close()
            raise
        return response

    def json(self, url: str, method: str = "GET", body: Any = None) -> Any:
        """A JSON document (at most 16 MiB) from `url`."""

        def attempt() -> Any:
            kwargs = {"json": body} if body is not None else {}
            with self._get(url, method=method, **kwargs) as response:
                data = bytearray()
                try:
                    for chunk in response.iter_content(CHUNK):
                        data += chunk
                        if len(data) > MAX_JSON_BYTES:
                            raise FetchError(f"response from {_host(url)} is larger than 16 MiB")
                except requests.RequestException as error:
                    raise _describe(error, url) from None
            try:
                return json.loads(data)
            except ValueError:
                raise FetchError(f"response from {redact_url(url)} is not JSON") from None

        return self._retrying(redact_url(url), attempt)

    def download(self, url: str | Callable[[], str], target: Path) -> int:
        """Stream `url` (or a fresh URL from the callable, per attempt) into `target`.

        Returns the size. Runs of zeros are skipped with a seek, so sparse data
        stays sparse on disk; the size still counts fully against the budget.
        """
        make_url = url if callable(url) else (lambda: url)

        def attempt() -> int:
            current = make_url()
            with self._get(current) as response:
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and self.budget.used + int(announced) > self.budget.limit:
                    raise FetchError(f"{_host(current)} announces {announced} bytes, more than "
                                     f"the disk limit (diskGB) leaves")
                return self._write(response, current, target)

        return self._retrying(str(target), attempt)

    def _write(self, response: requests.Response, url: str, target: Path) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(target, flags, 0o644)
        written = dropped = 0
        window = self.limits.cache_behind
        try:
            for piece in _pieces(response, url):
                self.budget.take(len(piece))
                written += len(piece)
                for start in range(0, len(piece), WRITE_SIZE):
                    _write_or_skip(fd, piece[start:start + WRITE_SIZE])
                if window is not None and written - dropped >= 2 * window:
                    dropped = written - window
                    _drop_cached(fd, dropped)
            os.ftruncate(fd, written)  # materialises trailing skipped zeros
        except requests.RequestException as error:
            self.budget.give_back(written)
            raise _describe(error, url) from None
        except BaseException:
            self.budget.give_back(written)
            raise
        finally:
            os.close(fd)
        return written
