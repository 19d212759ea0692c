"""Prometheus registries per service instance: nothing in telestack registers on ``prometheus_client.REGISTRY``.

Each service's metrics are one class (``GatewayMetrics``, ``WriterMetrics``, ...) deriving from `ServiceMetrics`:
its Counter/Gauge/Histogram objects live on the registry it was given, or on a `new_registry` of its own. A
service keeps that object as ``service.metrics``; `telestack.core.service.run_service` serves
``service.metrics.registry`` on /metrics, and tests read their own instance's counts from it, so two services in
one process (tests, the demo) never share a counter.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

__all__ = ["ServiceMetrics", "new_registry"]


def new_registry() -> CollectorRegistry:
    """An empty registry with what the process-wide one has by default: the ``process_*``, ``python_info`` and
    ``python_gc_*`` metrics (so /metrics shows them as it did when every service used the global registry)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class ServiceMetrics:
    """Base of a service's metrics class: `registry` is the one given, or a `new_registry` of its own.

    A subclass creates its metrics in ``__init__`` with ``registry=self.registry``, after calling this one.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry: CollectorRegistry = registry if registry is not None else new_registry()
