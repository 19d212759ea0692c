"""Which devices each no-data rule expects to hear from, even before they ever report.

A no-data rule's ``condition.expect`` is ``registry`` (every device of the device registry, the actuator's
``config/devices.yaml``, whose id matches the rule's ``select.tags.device``) or a list of ids (devices the
registry does not hold, such as a meter that takes no commands). Devices are thus listed once: in the
registry, or in the one rule that watches them.

Telemetry records are keyed by device id, so with several alerting replicas a device that never reported
belongs to the replica that owns the partition its first record would land on: `partition_of` is the
default partitioner of librdkafka (``consistent_random``: CRC-32 of the key), which every telestack
producer uses.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from telestack.actuator.registry import Registry, load_registry
from telestack.alerting.rules import NoDataCondition, RuleSet, compile_matchers
from telestack.core.errors import ConfigError

__all__ = ["expected_devices", "load_expected", "partition_of"]


def expected_devices(ruleset: RuleSet, registry: Registry | None) -> dict[str, tuple[str, ...]]:
    """Rule name → the device ids it expects (only rules with ``expect``)."""
    result: dict[str, tuple[str, ...]] = {}
    for rule in ruleset.rules:
        condition = rule.condition
        if not isinstance(condition, NoDataCondition) or condition.expect is None:
            continue
        if condition.expect == "registry":
            device = {k: v for k, v in rule.select.tags.items() if k == "device"}
            matches = compile_matchers(device)
            ids = [d.id for d in registry.devices if matches({"device": d.id})] if registry is not None else []
        else:
            ids = list(condition.expect)
        result[rule.name] = tuple(dict.fromkeys(ids))
    return result


def load_expected(ruleset: RuleSet, devices_file: Path) -> dict[str, tuple[str, ...]]:
    """`expected_devices`, reading the registry only when a rule says ``expect: registry``.

    Raises `ConfigError` when that registry is missing, `RegistryError` (naming the file) when it is invalid.
    """
    needs_registry = any(
        isinstance(rule.condition, NoDataCondition) and rule.condition.expect == "registry" for rule in ruleset.rules
    )
    if not needs_registry:
        return expected_devices(ruleset, None)
    if not devices_file.exists():
        raise ConfigError(
            f"{ruleset.source}: a rule expects the registry's devices, but the device registry {devices_file} "
            "does not exist (set alerting.devices_file)"
        )
    return expected_devices(ruleset, load_registry(devices_file))


def partition_of(device_id: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner gives a record keyed `device_id`.

    >>> partition_of("f1", 3), partition_of("f1", 1)
    (0, 0)
    """
    return zlib.crc32(device_id.encode()) % partitions
