"""`RulesWatcher`: an edit is validated before it is offered; a refused edit is remembered until a valid one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from telestack.alerting.errors import RuleError
from telestack.alerting.rules_watcher import RulesWatcher

RULES = """\
rules:
  - name: warm
    select: {{measurement: fermenter, field: temperature}}
    condition: {{type: threshold, above: {above}}}
"""


def touch(path: Path, text: str, step: int) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + step * 1_000_000_000))  # a distinct mtime each edit


def test_an_edit_is_offered_once_and_a_broken_one_is_refused_and_reported(tmp_path: Path) -> None:
    rules, devices = tmp_path / "alerts.yaml", tmp_path / "devices.yaml"
    rules.write_text(RULES.format(above=25))
    now = [0.0]
    watcher = RulesWatcher(rules, devices, 2.0, clock=lambda: now[0])
    now[0] = 2.0
    assert watcher.poll() is None  # nothing changed
    touch(rules, RULES.format(above=20), 1)
    assert watcher.poll() is None  # not yet: checked every 2 s
    now[0] = 4.0
    loaded = watcher.poll()
    assert loaded is not None and loaded.ruleset.rules[0].condition.above == 20  # type: ignore[union-attr]
    now[0] = 6.0
    assert watcher.poll() is None  # offered once

    touch(rules, RULES.format(above="warm"), 2)
    now[0] = 8.0
    with pytest.raises(RuleError, match=r"alerts.yaml:4: rules\[0\] \(warm\)\.condition"):
        watcher.poll()
    assert watcher.error is not None and "alerts.yaml:4" in watcher.error
    now[0] = 10.0
    assert watcher.poll() is None  # the same broken file is not tried again...
    assert watcher.error is not None  # ...and stays reported

    touch(rules, RULES.format(above=22), 3)
    now[0] = 12.0
    assert watcher.poll() is not None and watcher.error is None


def test_zero_interval_never_reloads(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(RULES.format(above=25))
    watcher = RulesWatcher(rules, tmp_path / "devices.yaml", 0, clock=lambda: 100.0)
    touch(rules, RULES.format(above=20), 1)
    assert watcher.poll() is None


def test_an_edit_of_the_registry_reloads_the_expected_devices(tmp_path: Path) -> None:
    rules, devices = tmp_path / "alerts.yaml", tmp_path / "devices.yaml"
    rules.write_text(
        "rules:\n  - name: quiet\n    select: {measurement: fermenter, tags: {device: {glob: 'f*'}}}\n"
        "    condition: {type: nodata, after: 20m, expect: registry}\n"
    )
    registry = "types: {{fermenter: {{}}}}\ndevices:\n{}"
    devices.write_text(registry.format("  - {id: f1, type: fermenter, site: brewery}\n"))
    now = [0.0]
    watcher = RulesWatcher(rules, devices, 1.0, clock=lambda: now[0])
    touch(
        devices, registry.format("  - {id: f1, type: fermenter, site: b}\n  - {id: f4, type: fermenter, site: b}\n"), 1
    )
    now[0] = 1.0
    loaded = watcher.poll()
    assert loaded is not None and loaded.expected == {"quiet": ("f1", "f4")}
