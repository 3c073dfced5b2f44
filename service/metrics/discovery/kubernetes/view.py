"""RoleView: the target groups of one role over shared informers, built once and shared by every config
with the same (API server, credentials, role, namespaces, selectors, attach_metadata).

Like Prometheus' per-role discoverers, a view keys its work by object: an event on the role's own resource
rebuilds that object's group; an event on a resource it reads (the service of an endpoints object, the
node of a pod with attach_metadata) rebuilds the objects that refer to it. Nothing is built before every
informer it reads has listed once (client-go's WaitForCacheSync). Each rebuild round ends with one call to
every subscriber, so a burst of events costs each scrape pool one resync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from service.log import get_logger
from service.metrics.discovery.base import TargetGroup
from service.metrics.discovery.kubernetes import endpoints, endpointslice, ingress, node, pod, service
from service.metrics.discovery.kubernetes.informer import Informer, Obj
from service.metrics.discovery.kubernetes.meta import node_metadata_labels
from service.tasks import cancel_and_wait

# The resources each role reads (its own first), keyed by the selector role that filters them.
ROLE_RESOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "pod": (("pod", "pods"),),
    "service": (("service", "services"),),
    "node": (("node", "nodes"),),
    "ingress": (("ingress", "ingresses"),),
    "endpoints": (("endpoints", "endpoints"), ("service", "services"), ("pod", "pods")),
    "endpointslice": (("endpointslice", "endpointslices"), ("service", "services"), ("pod", "pods")),
}
CLUSTER_SCOPED = frozenset({"nodes"})
_SOURCES: dict[str, Callable[[str, str], str]] = {
    "pod": pod.source, "service": service.source, "ingress": ingress.source, "endpoints": endpoints.source,
    "endpointslice": endpointslice.source,
}


@dataclass(frozen=True)
class ViewKey:
    """What makes two configs' discovery identical. Selectors are canonical text per selector role."""

    cluster: str
    role: str
    namespaces: tuple[str, ...]  # ("",) means all namespaces
    selectors: tuple[tuple[str, str, str], ...]  # (selector role, label, field)
    attach_node: bool

    def selector(self, role: str) -> tuple[str, str]:
        for r, label, fld in self.selectors:
            if r == role:
                return label, fld
        return "", ""


# acquire(resource, namespace, label, field) -> Informer, from the registry.
Acquire = Callable[[str, str, str, str], Informer]


class _Unit:
    """The informers of one namespace (or all namespaces) for one view."""

    def __init__(self, main: Informer, services: Informer | None, pods: Informer | None, nodes: Informer | None):
        self.main = main
        self.services = services
        self.pods = pods
        self.nodes = nodes


class RoleView:
    """One role's target groups (`groups`, source -> group) kept current from shared informers; each change
    round calls every subscriber once. start()/stop() own its task."""

    def __init__(self, key: ViewKey, acquire: Acquire) -> None:
        self.key = key
        self.groups: dict[str, TargetGroup] = {}
        self.subscribers: list[Callable[[], None]] = []
        self._sorted: list[TargetGroup] | None = None  # sorted_groups(), built once per change for every subscriber
        # groups_with_label() indexes, built on first use per label name and kept current:
        # label -> value -> source -> group, and label -> sources where a target sets the label itself.
        self._index: dict[str, dict[str, dict[str, TargetGroup]]] = {}
        self._in_targets: dict[str, set[str]] = {}
        self.informers: list[Informer] = []
        self.units: list[_Unit] = []
        self._pending: set[tuple[int, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._handlers: list[tuple[Informer, Callable[[str, str, Obj], None]]] = []
        self.log = get_logger("discovery", mechanism="kubernetes", role=key.role)
        self._build_units(acquire)

    def _informer(self, acquire: Acquire, sel_role: str, resource: str, namespace: str) -> Informer:
        label, fld = self.key.selector(sel_role)
        inf = acquire(resource, "" if resource in CLUSTER_SCOPED else namespace, label, fld)
        self.informers.append(inf)
        return inf

    def _build_units(self, acquire: Acquire) -> None:
        role = self.key.role
        wanted = ROLE_RESOURCES[role]
        nodes_needed = self.key.attach_node and role in ("pod", "endpoints", "endpointslice")
        namespaces = ("",) if role == "node" else self.key.namespaces
        for ns in namespaces:
            main = self._informer(acquire, *wanted[0], ns)
            services = self._informer(acquire, "service", "services", ns) if len(wanted) > 1 else None
            pods = self._informer(acquire, "pod", "pods", ns) if len(wanted) > 1 else None
            nodes = self._informer(acquire, "node", "nodes", "") if nodes_needed else None
            self.units.append(_Unit(main, services, pods, nodes))
        for i, unit in enumerate(self.units):
            self._attach(unit.main, self._main_handler(i))
            if unit.services is not None:
                self._attach(unit.services, self._service_handler(i))
            if unit.nodes is not None:
                self._attach(unit.nodes, self._node_handler(i))

    def _attach(self, inf: Informer, handler: Callable[[str, str, Obj], None]) -> None:
        inf.add_handler(handler)
        self._handlers.append((inf, handler))

    # ------------------------------------------------------------------------------------------ events

    def _enqueue(self, unit: int, key: str) -> None:
        self._pending.add((unit, key))
        self._wake.set()

    def _main_handler(self, i: int) -> Callable[[str, str, Obj], None]:
        def handle(kind: str, key: str, obj: Obj) -> None:
            self._enqueue(i, key)
        return handle

    def _service_handler(self, i: int) -> Callable[[str, str, Obj], None]:
        unit = self.units[i]

        def handle(kind: str, key: str, svc: Obj) -> None:
            if self.key.role == "endpoints":
                if key in unit.main.store:
                    self._enqueue(i, key)
                return
            name = (svc.get("metadata") or {}).get("name")
            for skey, eps in unit.main.store.items():
                if endpointslice.service_name(eps) == name:
                    self._enqueue(i, skey)
        return handle

    def _node_handler(self, i: int) -> Callable[[str, str, Obj], None]:
        unit = self.units[i]
        role = self.key.role

        def handle(kind: str, key: str, obj: Obj) -> None:
            for okey, o in unit.main.store.items():
                if key in _node_names(role, o):
                    self._enqueue(i, okey)
        return handle

    # ---------------------------------------------------------------------------------------- building

    def _build(self, unit: _Unit, obj: Obj) -> TargetGroup | None:
        role = self.key.role
        nodes = unit.nodes.store if unit.nodes is not None else None
        if role == "pod":
            node_labels: dict[str, str] = {}
            if nodes is not None:
                name = (obj.get("spec") or {}).get("nodeName", "")
                node_labels = node_metadata_labels(nodes.get(name), name)
            return pod.build(obj, node_labels)
        if role == "service":
            return service.build(obj)
        if role == "node":
            return node.build(obj)
        if role == "ingress":
            return ingress.build(obj)
        assert unit.services is not None and unit.pods is not None
        builder = endpoints.build if role == "endpoints" else endpointslice.build
        return builder(obj, unit.services.store, unit.pods.store, nodes)

    def _source(self, key: str) -> str:
        if self.key.role == "node":
            return node.source(key)
        ns, _, name = key.partition("/")
        return _SOURCES[self.key.role](ns, name)

    def process(self) -> bool:
        """Rebuild the groups of every pending object; True when anything changed."""
        pending, self._pending = self._pending, set()
        changed = False
        for i, key in pending:
            unit = self.units[i]
            obj = unit.main.store.get(key)
            source = self._source(key)
            if obj is None:
                old = self.groups.pop(source, None)
                if old is not None:
                    self._reindex(source, old, None)
                    changed = True
                continue
            group = self._build(unit, obj)
            if group is None:  # Prometheus sends nothing then: the previous group stays
                continue
            old = self.groups.get(source)
            if old != group:
                self.groups[source] = group
                self._reindex(source, old, group)
                changed = True
        return changed

    def _reindex(self, source: str, old: TargetGroup | None, new: TargetGroup | None) -> None:
        for name, by_value in self._index.items():
            if old is not None:
                by_value.get(old.labels.get(name, ""), {}).pop(source, None)
                self._in_targets[name].discard(source)
            if new is not None:
                by_value.setdefault(new.labels.get(name, ""), {})[source] = new
                if any(name in t for t in new.targets):
                    self._in_targets[name].add(source)

    def groups_with_label(self, name: str, value: str) -> list[TargetGroup]:
        """The groups whose targets can have label `name` equal to `value`: the group sets it, or one of its
        targets sets the label itself. Lets a scrape pool whose first rule keeps one label value look at
        its few pods instead of all of them."""
        by_value = self._index.get(name)
        if by_value is None:
            by_value = self._index[name] = {}
            self._in_targets[name] = set()
            for source, group in self.groups.items():
                self._reindex(source, None, group)
        found = dict(by_value.get(value, {}))
        for source in self._in_targets[name]:
            found[source] = self.groups[source]
        return [g for _, g in sorted(found.items())]

    async def _run(self) -> None:
        for inf in self.informers:
            await inf.synced.wait()
        # Informers shared with an older view listed before this view's handlers were attached.
        for i, unit in enumerate(self.units):
            for key in unit.main.store:
                self._enqueue(i, key)
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.process():
                self._sorted = None
                for notify in list(self.subscribers):
                    notify()

    def sorted_groups(self) -> list[TargetGroup]:
        if self._sorted is None:
            self._sorted = [g for _, g in sorted(self.groups.items())]
        return self._sorted

    @property
    def synced(self) -> bool:
        return all(inf.synced.is_set() for inf in self.informers)

    def start(self) -> None:
        for inf in self.informers:
            inf.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kubernetes view {self.key.role}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for inf, handler in self._handlers:  # the informers may live on for other views
            inf.remove_handler(handler)
        self._handlers.clear()
        self.subscribers.clear()


def _node_names(role: str, obj: Obj) -> set[str]:
    if role == "pod":
        return {(obj.get("spec") or {}).get("nodeName", "")}
    if role == "endpoints":
        return {a.get("nodeName") for s in obj.get("subsets") or []
                for a in (s.get("addresses") or []) + (s.get("notReadyAddresses") or []) if a.get("nodeName")}
    return {e.get("nodeName") for e in obj.get("endpoints") or [] if e.get("nodeName")}
