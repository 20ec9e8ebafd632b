"""The embedded Knative Eventing: Broker, ApiServerSource and PingSource (DESIGN section 8).

Routing comes from the manifests in `knative/` (the single source of truth);
`start_eventing(...)` runs all of it wired together.
"""

from devstack.eventing.apiserversource import ApiServerSource, make_apiserver_event
from devstack.eventing.broker import Broker, LogEntry, Trigger
from devstack.eventing.manifests import DEFAULT_MANIFESTS_DIR, ManifestError, load_manifests
from devstack.eventing.pingsource import PingSource
from devstack.eventing.stack import Eventing, start_eventing

__all__ = [
    "DEFAULT_MANIFESTS_DIR",
    "ApiServerSource",
    "Broker",
    "Eventing",
    "LogEntry",
    "ManifestError",
    "PingSource",
    "Trigger",
    "load_manifests",
    "make_apiserver_event",
    "start_eventing",
]
