"""Metrics per service instance (issue 17): each service's metrics class counts on its own registry, and nothing
in telestack registers on prometheus_client's process-wide ``REGISTRY``."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

import telestack
from telestack.actuator.metrics import ActuatorMetrics
from telestack.alerting.metrics import AlertingMetrics
from telestack.can_gateway.metrics import GatewayMetrics
from telestack.core.metrics import ServiceMetrics, new_registry
from telestack.influx_writer.downsampling import DownsampleMetrics
from telestack.influx_writer.metrics import WriterMetrics
from telestack.kafka_admin.lag_command import LagMetrics
from telestack.mqtt_bridge.metrics import BridgeMetrics

SERVICES = Path(__file__).resolve().parents[2] / "services"
METRICS_CLASSES: list[type[ServiceMetrics]] = [
    ActuatorMetrics,
    AlertingMetrics,
    BridgeMetrics,
    DownsampleMetrics,
    GatewayMetrics,
    LagMetrics,
    WriterMetrics,
]


def _all_subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in (direct, *_all_subclasses(direct))}


def _walk_telestack() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(telestack.__path__, "telestack.")
        if info.name.rsplit(".", 1)[-1] != "__main__"  # runs the CLI
    ]


def _metrics_of(instance: ServiceMetrics) -> list[MetricWrapperBase]:
    return [value for value in vars(instance).values() if isinstance(value, MetricWrapperBase)]


def _touch(metric: MetricWrapperBase) -> None:
    """Count 5 on `metric` (on its child with every label "x" when it has labels)."""
    labels = metric._labelnames
    target = metric.labels(*["x"] * len(labels)) if labels else metric
    if isinstance(target, Counter):
        target.inc(5)
    elif isinstance(target, Gauge):
        target.set(5)
    elif isinstance(target, Histogram):
        target.observe(5)
    else:
        raise AssertionError(f"unexpected metric type {type(metric).__name__}")


def _values(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every telestack sample of `registry` (but the ``_created`` timestamps), by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith("telestack_") and not sample.name.endswith("_created")
    }


def test_every_service_metrics_class_is_tested() -> None:
    for name in _walk_telestack():
        importlib.import_module(name)
    ours = {cls for cls in _all_subclasses(ServiceMetrics) if cls.__module__.startswith("telestack.")}
    assert ours == set(METRICS_CLASSES)


@pytest.mark.parametrize("cls", METRICS_CLASSES, ids=lambda cls: cls.__name__)
def test_two_instances_in_one_process_count_apart(cls: type[ServiceMetrics]) -> None:
    one, two = cls(), cls()
    assert one.registry is not two.registry
    metrics = _metrics_of(one)
    assert metrics, f"{cls.__name__} holds no metric"
    untouched = _values(two.registry)
    assert all(value == 0 for value in untouched.values())
    for metric in metrics:
        _touch(metric)
    counted = _values(one.registry)
    for metric in metrics:  # each moved by 5 on `one`'s registry ...
        suffix = {"counter": "_total", "gauge": "", "histogram": "_sum"}[metric._type]
        labels = tuple(sorted((label, "x") for label in metric._labelnames))
        assert counted[(metric._name + suffix, labels)] == 5, metric._name
    assert _values(two.registry) == untouched  # ... and not at all on `two`'s


def test_a_registry_given_is_used_and_duplicates_on_it_are_refused() -> None:
    registry = new_registry()
    metrics = GatewayMetrics(registry)
    assert metrics.registry is registry
    metrics.frames.labels("powertrain").inc(3)
    assert registry.get_sample_value("telestack_can_gateway_frames_total", {"bus": "powertrain"}) == 3
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        GatewayMetrics(registry)  # one service's metrics per registry


def test_a_new_registry_has_the_process_metrics_the_global_one_had() -> None:
    names = {family.name for family in new_registry().collect()}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= {
        sample.name for family in new_registry().collect() for sample in family.samples
    }
    assert any(name.startswith("python_gc_") for name in names)
    assert not any(name.startswith("telestack_") for name in names)


def test_no_module_registers_on_the_global_registry_at_import() -> None:
    """Every module of telestack imported in a fresh interpreter: prometheus_client's REGISTRY gains nothing."""
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        from prometheus_client import REGISTRY

        before = set(REGISTRY._collector_to_names)
        import telestack

        modules, failed = [], []
        for info in pkgutil.walk_packages(telestack.__path__, "telestack.", onerror=failed.append):
            if info.name.rsplit(".", 1)[-1] == "__main__":
                continue  # runs the CLI
            modules.append(info.name)
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failed.append(f"{info.name}: {exc!r}")
        added = sorted(n for c in set(REGISTRY._collector_to_names) - before for n in REGISTRY._collector_to_names[c])
        print(len(modules))
        print(failed)
        print(added)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(SERVICES)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    count, failed, added = done.stdout.splitlines()[-3:]
    assert int(count) > 100  # the walk saw the whole package
    assert failed == "[]"
    assert added == "[]"
