"""The embedded Kubernetes API server of the c2d devstack.

Usage::

    from devstack.apiserver import APIServer
    srv = APIServer(crd_files=[Path("knative/crd.yaml")], data_dir=None, log_dir=Path("logs"))
    url = srv.start()          # "http://127.0.0.1:PORT", served by background threads
    ...
    srv.stop()                 # closes watches and log streams, stops the threads

or ``python -m devstack.apiserver --port N --data-dir D --log-dir L --crd F`` in the
foreground (prints the URL). ``devstack.kubeconfig.write_kubeconfig(url, path)`` writes a
kubeconfig (context ``c2d-embedded``) for ``kubectl`` and the ``kubernetes`` client.

Contract with the kubelet and the Job controller (they talk to this server over HTTP only):

- **Pod logs.** ``GET /api/v1/namespaces/<ns>/pods/<pod>/log`` reads the file
  ``<log_dir>/<ns>/<pod>/<container>.log`` (``log_dir`` is the constructor argument).
  The kubelet creates that file when the container starts and appends stdout and stderr
  to it. Query parameters: ``container`` (required when the pod has several),
  ``tailLines``, ``limitBytes``, ``follow=true`` (streams what is appended until the pod
  is deleted, its phase is ``Succeeded``/``Failed``, or the container's
  ``state.terminated`` is set). A missing file answers 400 "waiting to start", as a real
  server does for a container not yet started.
- **Binding and graceful deletion.** A pod is "on a node" once ``spec.nodeName`` is set,
  through ``POST .../pods/<pod>/binding`` (a ``Binding`` with ``target.name``), as a
  scheduler does. Deleting a pod that is on a node and not finished sets
  ``deletionTimestamp`` and ``deletionGracePeriodSeconds`` (default
  ``terminationGracePeriodSeconds``, 30) and keeps it: the kubelet sees that MODIFIED
  event, stops the processes (SIGTERM, grace, SIGKILL), then deletes the pod with
  ``gracePeriodSeconds=0``. A pod not bound, or already ``Succeeded``/``Failed``, is
  removed at once (DELETED event).
- **Jobs.** Deleting a Job without ``propagationPolicy`` orphans its pods (the batch/v1
  default of a real server); ``Background`` / ``Foreground`` delete them through the
  garbage collector, which follows ``ownerReferences`` (``blockOwnerDeletion`` holds a
  foreground owner until the dependent is gone).
- Status is written through the ``/status`` subresource; writes to the main resource
  leave ``status`` unchanged (pods, jobs, PVCs, namespaces, CRDs, custom resources with a
  status subresource).
"""

from .server import APIServer

__all__ = ["APIServer"]
