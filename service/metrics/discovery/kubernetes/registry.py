"""The node's registry of Kubernetes watches: one API client per (API server, credentials), one informer per
(API server, credentials, resource, namespace, label selector, field selector), one RoleView per identical
discovery block. All are reference counted: the thousandth config that discovers pods in a cluster adds a
subscriber, not a watch, and the last one to stop closes them.

There is one registry per event loop (a node runs one loop; tests run several in turn).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.metrics.discovery.kubernetes.client import APIClient, ClusterAccess, resource_path
from service.metrics.discovery.kubernetes.informer import Informer
from service.metrics.discovery.kubernetes.metrics import ROLE_OF
from service.metrics.discovery.kubernetes.view import RoleView, ViewKey

InformerKey = tuple[str, str, str, str, str]  # cluster, resource, namespace, label selector, field selector
T = TypeVar("T")


@dataclass
class _Counted(Generic[T]):
    value: T
    refs: int = 0


@dataclass
class Registry:
    clients: dict[str, _Counted[APIClient]] = field(default_factory=dict)
    informers: dict[InformerKey, _Counted[Informer]] = field(default_factory=dict)
    views: dict[ViewKey, _Counted[RoleView]] = field(default_factory=dict)
    view_informers: dict[ViewKey, list[InformerKey]] = field(default_factory=dict)
    informers_opened: int = 0

    def acquire_view(self, key: ViewKey, access: ClusterAccess) -> RoleView:
        entry = self.views.get(key)
        if entry is None:
            client = self._client(access)
            owned: list[InformerKey] = []

            def acquire(resource: str, namespace: str, label: str, fld: str) -> Informer:
                ikey = (access.key, resource, namespace, label, fld)
                owned.append(ikey)
                inf_entry = self.informers.get(ikey)
                if inf_entry is None:
                    inf = Informer(client, resource_path(resource, namespace), label, fld, ROLE_OF[resource])
                    inf_entry = self.informers[ikey] = _Counted(inf)
                    self.informers_opened += 1
                    inf.start()
                inf_entry.refs += 1
                return inf_entry.value

            view = RoleView(key, acquire)
            self.view_informers[key] = owned
            view.start()
            entry = self.views[key] = _Counted(view)
        entry.refs += 1
        return entry.value

    def _client(self, access: ClusterAccess) -> APIClient:
        entry = self.clients.get(access.key)
        if entry is None:
            entry = self.clients[access.key] = _Counted(APIClient(access))
        entry.refs += 1
        return entry.value

    async def release_view(self, view: RoleView) -> None:
        entry = self.views.get(view.key)
        if entry is None or entry.value is not view:
            return
        entry.refs -= 1
        if entry.refs > 0:
            return
        del self.views[view.key]
        await view.stop()
        for ikey in self.view_informers.pop(view.key, []):
            inf_entry = self.informers.get(ikey)
            if inf_entry is None:
                continue
            inf_entry.refs -= 1
            if inf_entry.refs <= 0:
                del self.informers[ikey]
                await inf_entry.value.stop()
        client_entry = self.clients.get(view.key.cluster)
        if client_entry is not None:
            client_entry.refs -= 1
            if client_entry.refs <= 0:
                del self.clients[view.key.cluster]
                await client_entry.value.close()

    def stats(self) -> dict[str, int]:
        """Counts for the bench and the tests: live informers, LIST and WATCH requests made, objects held."""
        infs = [e.value for e in self.informers.values()]
        return {"clients": len(self.clients), "informers": len(infs), "views": len(self.views),
                "informers_opened": self.informers_opened, "lists": sum(i.lists for i in infs),
                "watches": sum(i.watches for i in infs), "objects": sum(len(i.store) for i in infs)}


_REGISTRIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Registry] = weakref.WeakKeyDictionary()


def registry() -> Registry:
    """The registry of the running event loop."""
    loop = asyncio.get_running_loop()
    reg = _REGISTRIES.get(loop)
    if reg is None:
        reg = _REGISTRIES[loop] = Registry()
    return reg
