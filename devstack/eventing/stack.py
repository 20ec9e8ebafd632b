"""Start the embedded eventing wired together: Broker, ApiServerSources and PingSources."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes.client import ApiClient
from kubernetes.config import new_client_from_config

from devstack.eventing.apiserversource import ApiServerSource
from devstack.eventing.broker import Broker, LocalSender
from devstack.eventing.delivery import Response, resolve_destination
from devstack.eventing.manifests import (
    DEFAULT_MANIFESTS_DIR,
    Manifest,
    ManifestError,
    load_manifests,
    select,
)
from devstack.eventing.pingsource import PingSource

log = logging.getLogger(__name__)

SOURCES_GROUP = "sources.knative.dev"


@dataclass
class Eventing:
    """The running eventing; `stop()` (or leaving the `with` block) stops all of it."""

    broker: Broker
    apiserver_sources: list[ApiServerSource] = field(default_factory=list)
    ping_sources: list[PingSource] = field(default_factory=list)
    api_client: ApiClient | None = None
    sender: LocalSender | None = None

    @property
    def broker_url(self) -> str:
        return self.broker.url

    def fire_ping(self, name: str | None = None) -> list[Response]:
        """Tick the PingSources (all, or the one named) now."""
        pings = [p for p in self.ping_sources if name is None or p.name == name]
        if name is not None and not pings:
            raise KeyError(f"no PingSource named {name!r}")
        return [ping.fire() for ping in pings]

    def stop(self) -> None:
        for source in [*self.ping_sources, *self.apiserver_sources]:
            source.stop()
        self.broker.stop()
        if self.sender is not None:
            self.sender.close()
        if self.api_client is not None:
            self.api_client.close()

    def __enter__(self) -> Eventing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_eventing(
    manifests_dir: Path | str = DEFAULT_MANIFESTS_DIR,
    kubeconfig: Path | str | None = None,
    services: Mapping[str, str] | None = None,
    namespace: str = "default",
    ping_period: float | None = None,
    broker_name: str = "c2d",
    broker_port: int = 0,
    ready_timeout: float = 10.0,
) -> Eventing:
    """Start the Broker `broker_name` and the sources of the manifests that send to it.

    `services` maps Knative Service names to base URLs. ApiServerSources watch
    the API server of `kubeconfig` (without one, none are started) and are
    listed before this returns, so later changes are sent. `ping_period`
    replaces every PingSource's schedule with a tick every N seconds.
    """
    services = dict(services or {})
    manifests = load_manifests(manifests_dir)
    broker = Broker(manifests_dir, services, broker_name, namespace, port=broker_port).start()
    eventing = Eventing(broker)
    # Sources sending to this Broker hand it their events in-process (LocalSender).
    sender = eventing.sender = LocalSender(broker)
    addressables = {"Service": services, "Broker": {broker_name: broker.url}}
    try:
        api_sources = _in_namespace(select(manifests, "ApiServerSource", SOURCES_GROUP),
                                    namespace)
        if api_sources and kubeconfig is not None:
            eventing.api_client = new_client_from_config(config_file=str(kubeconfig))
            for manifest in api_sources:
                source = ApiServerSource(manifest, _sink(manifest, addressables),
                                         eventing.api_client, namespace, sender=sender)
                eventing.apiserver_sources.append(source.start())
            for source in eventing.apiserver_sources:
                if not source.wait_ready(ready_timeout):
                    raise TimeoutError(f"ApiServerSource {source.name}: the first list of the "
                                       f"API server did not finish in {ready_timeout} s")
        elif api_sources:
            log.warning("no kubeconfig: ApiServerSources %s not started",
                        [m.name for m in api_sources])
        for manifest in _in_namespace(select(manifests, "PingSource", SOURCES_GROUP), namespace):
            ping = PingSource(manifest, _sink(manifest, addressables), namespace, ping_period,
                              sender=sender)
            eventing.ping_sources.append(ping.start())
    except BaseException:
        eventing.stop()
        raise
    return eventing


def _in_namespace(manifests: list[Manifest], namespace: str) -> list[Manifest]:
    return [m for m in manifests if m.namespace in (None, namespace)]


def _sink(manifest: Manifest, addressables: Mapping[str, Mapping[str, str]]) -> str:
    if "sink" not in manifest.spec:
        raise ManifestError(f"{manifest.where}: spec.sink is required")
    return resolve_destination(manifest.spec["sink"], f"{manifest.where}: spec.sink",
                               addressables)
