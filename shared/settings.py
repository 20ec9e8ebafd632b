"""Settings: every variable of the original operator-engine, typed and parsed once.

Names and defaults follow the original engine's README and constants so that an
existing deployment's environment keeps its meaning. c2d's own additions are
listed after them. A bad value raises :class:`SettingsError` naming the
variable, at start-up, never deep inside a handler.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
PRIVATE_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")


SECRET_VARIABLES = frozenset({"OPERATOR_PRIVATE_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                              "IPFS_API_KEY", "IPFS_API_CLIENT"})


class SettingsError(ValueError):
    """A configuration variable has an invalid value (a secret's value is never shown)."""

    def __init__(self, variable: str, value: str, problem: str):
        self.variable = variable
        shown = "<redacted>" if variable in SECRET_VARIABLES else repr(value)
        super().__init__(f"invalid setting {variable}={shown}: {problem}")


def _text(raw: str) -> str:
    return raw


def _optional_text(raw: str) -> str | None:
    return raw or None


def _number(kind: type, minimum: float) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"must be {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}")
        return value

    return parse


def _flag(raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"must be one of {', '.join(TRUE_WORDS + FALSE_WORDS[1:])}")


def _private_key(raw: str) -> str | None:
    if not raw:
        return None
    if not PRIVATE_KEY.match(raw):
        raise ValueError("must be 64 hexadecimal characters, optionally prefixed with 0x")
    return raw if raw.startswith("0x") else "0x" + raw


def _node_selector(raw: str) -> tuple[str, str] | None:
    """`value` selects nodes labelled `scope=value` (the original); `key=value` any label."""
    if not raw:
        return None
    key, _, value = raw.rpartition("=") if "=" in raw else ("scope", "", raw)
    if not LABEL_NAME.match(key) or len(key.rpartition("/")[2]) > 63:
        raise ValueError(f"label key {key!r} is not a valid Kubernetes label name")
    if not LABEL_VALUE.match(value) or len(value) > 63:
        raise ValueError(f"label value {value!r} is not a valid Kubernetes label value "
                         "(alphanumerics, '-', '_', '.', at most 63 characters)")
    return key, value


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw

    return parse


def _log_level(raw: str) -> str:
    return _choice(LOG_LEVELS)(raw.upper())


def _ipfs_type(raw: str) -> str:
    return _choice(("CLIENT", "CLUSTER"))(raw.upper())


def _dns_label(raw: str) -> str:
    if not DNS_LABEL.match(raw) or len(raw) > 63:
        raise ValueError("must be a DNS-1123 label (lowercase alphanumerics and '-')")
    return raw


def _url(raw: str) -> str | None:
    if not raw:
        return None
    if not URL.match(raw):
        raise ValueError("must be an http:// or https:// URL without spaces")
    return raw


def _optional_name(raw: str) -> str | None:
    """A Kubernetes object name (DNS-1123 subdomain), or unset."""
    if not raw:
        return None
    if not DNS_SUBDOMAIN.match(raw) or len(raw) > 253:
        raise ValueError("must be a Kubernetes object name (lowercase alphanumerics, '-', '.')")
    return raw


def _image(raw: str) -> str:
    if not IMAGE.match(raw):
        raise ValueError("must be a container image reference (no spaces or quotes)")
    return raw


def _optional_image(raw: str) -> str | None:
    return _image(raw) if raw else None


def _cron(raw: str) -> str:
    if len(raw.split()) != 5:
        raise ValueError("must be a cron expression with five fields")
    return raw


# attribute -> (environment variable, default as the environment would give it, parser)
SPEC: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    # The environment announced to operator-service (original defaults).
    "n_cpu": ("nCPU", "1", _number(float, 0.001)),
    "cpu_type": ("cpuType", "", _text),
    "n_gpu": ("nGPU", "0", _number(int, 0)),
    "gpu_ram": ("gpuRam", "0", _number(float, 0)),
    "gpu_type": ("gpuType", "", _text),
    "ram_gb": ("ramGB", "1", _number(float, 0.001)),
    "disk_gb": ("diskGB", "1", _number(float, 0.001)),
    "price_minute": ("priceMinute", "0", _number(float, 0)),
    "description": ("description", "", _text),
    "max_jobs": ("maxJobs", "10", _number(int, 1)),
    "max_job_duration": ("maxJobDuration", "60", _number(int, 1)),
    "storage_expiry": ("STORAGE_EXPIRY", "0", _number(int, 0)),
    # Signing and storage.
    "operator_private_key": ("OPERATOR_PRIVATE_KEY", "", _private_key),
    "ipfs_type": ("IPFS_TYPE", "CLIENT", _ipfs_type),
    "ipfs_output": ("IPFS_OUTPUT", "", _url),
    "ipfs_adminlogs": ("IPFS_ADMINLOGS", "", _url),
    "ipfs_output_prefix": ("IPFS_OUTPUT_PREFIX", "", _optional_text),
    "ipfs_adminlogs_prefix": ("IPFS_ADMINLOGS_PREFIX", "", _optional_text),
    "ipfs_expiry_time": ("IPFS_EXPIRY_TIME", "", _optional_text),
    "ipfs_api_key": ("IPFS_API_KEY", "", _optional_text),
    "ipfs_api_client": ("IPFS_API_CLIENT", "", _optional_text),
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID", "", _optional_text),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY", "", _optional_text),
    "aws_region": ("AWS_REGION", "", _optional_text),
    "aws_bucket_output": ("AWS_BUCKET_OUTPUT", "", _optional_text),
    "aws_bucket_adminlogs": ("AWS_BUCKET_ADMINLOGS", "", _optional_text),
    "aws_endpoint_url": ("AWS_ENDPOINT_URL", "", _url),
    # Pods.
    "storage_class": ("STORAGE_CLASS", "gp2", _dns_label),
    "notify_start_url": ("NOTIFY_START_URL", "", _url),
    "notify_stop_url": ("NOTIFY_STOP_URL", "", _url),
    "service_account": ("SERVICE_ACCOUNT", "default", _dns_label),
    "node_selector": ("NODE_SELECTOR", "", _node_selector),
    "pull_secret": ("PULL_SECRET", "", _optional_name),
    "pull_policy": ("PULL_POLICY", "Always", _choice(PULL_POLICIES)),
    "filtering_container": ("FILTERING_CONTAINER", "", _optional_image),
    "log_cfg": ("LOG_CFG", "", _optional_text),
    "log_level": ("LOG_LEVEL", "DEBUG", _log_level),
    "debug_no_cleanup": ("DEBUG_NO_CLEANUP", "", _flag),
    "pod_configuration_container": ("POD_CONFIGURATION_CONTAINER", "c2d:latest", _image),
    "pod_publish_container": ("POD_PUBLISH_CONTAINER", "c2d:latest", _image),
    # c2d's own.
    "namespace": ("C2D_NAMESPACE", "default", _dns_label),
    "environment_id": ("C2D_ENVIRONMENT_ID", "", _optional_text),
    "templates_dir": ("TEMPLATES_DIR", "", _optional_text),
    "storage_dir": ("C2D_STORAGE_DIR", "/var/lib/c2d/storage", _text),
    "algorithm_allow_network": ("ALGORITHM_ALLOW_NETWORK", "false", _flag),
    "job_deadline_seconds": ("JOB_DEADLINE_SECONDS", "3600", _number(int, 1)),
    "workflow_retention_hours": ("WORKFLOW_RETENTION_HOURS", "168", _number(int, 0)),
    "resync_schedule": ("RESYNC_SCHEDULE", "* * * * *", _cron),
    "secrets_name": ("C2D_SECRETS_NAME", "c2d-secrets", _dns_label),
    "notify_timeout_seconds": ("NOTIFY_TIMEOUT_SECONDS", "10", _number(float, 0.1)),
}


@dataclass(frozen=True, repr=False)
class Settings:
    """The engine's configuration; build it with :func:`load`."""

    n_cpu: float
    cpu_type: str
    n_gpu: int
    gpu_ram: float
    gpu_type: str
    ram_gb: float
    disk_gb: float
    price_minute: float
    description: str
    max_jobs: int
    max_job_duration: int
    storage_expiry: int
    operator_private_key: str | None
    ipfs_type: str
    ipfs_output: str | None
    ipfs_adminlogs: str | None
    ipfs_output_prefix: str | None
    ipfs_adminlogs_prefix: str | None
    ipfs_expiry_time: str | None
    ipfs_api_key: str | None
    ipfs_api_client: str | None
    aws_access_key_id: str | None
    aws_secret_access_key: str | None
    aws_region: str | None
    aws_bucket_output: str | None
    aws_bucket_adminlogs: str | None
    aws_endpoint_url: str | None
    storage_class: str
    notify_start_url: str | None
    notify_stop_url: str | None
    service_account: str
    node_selector: tuple[str, str] | None
    pull_secret: str | None
    pull_policy: str
    filtering_container: str | None
    log_cfg: str | None
    log_level: str
    debug_no_cleanup: bool
    pod_configuration_container: str
    pod_publish_container: str
    namespace: str
    environment_id: str | None
    templates_dir: str | None
    storage_dir: str
    algorithm_allow_network: bool
    job_deadline_seconds: int
    workflow_retention_hours: int
    resync_schedule: str
    secrets_name: str
    notify_timeout_seconds: float

    @property
    def environment_name(self) -> str:
        """The id announced to operator-service (the original used its namespace)."""
        return self.environment_id or self.namespace

    @property
    def operator_address(self) -> str | None:
        """The Ethereum address of OPERATOR_PRIVATE_KEY (consumerAddress)."""
        if self.operator_private_key is None:
            return None
        return _address_of(self.operator_private_key)

    def __repr__(self) -> str:
        return f"Settings({self.redacted()})"

    def redacted(self) -> dict[str, Any]:
        """The settings for logs: secrets replaced by '***'."""
        secret = {"operator_private_key", "aws_secret_access_key", "aws_access_key_id",
                  "ipfs_api_key", "ipfs_api_client"}
        return {f.name: ("***" if f.name in secret and getattr(self, f.name) else
                         getattr(self, f.name)) for f in fields(self)}


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse settings from `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    values = {}
    for attribute, (variable, default, parse) in SPEC.items():
        raw = environ.get(variable, default)
        try:
            values[attribute] = parse(raw.strip() if parse is not _text else raw)
        except ValueError as error:
            raise SettingsError(variable, raw, str(error)) from None
    return Settings(**values)


@cache
def get() -> Settings:
    """The process's settings, parsed once from its environment."""
    return load()


@cache
def _address_of(private_key: str) -> str:
    """Derived once per key: a pure-Python curve multiplication costs ~1.4 ms, and
    every environment announcement (each admission) asks for it."""
    from eth_account import Account

    return Account.from_key(private_key).address
