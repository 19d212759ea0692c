"""Hot reload of the alert rules: `RulesWatcher` notices an edit of the rules file (or of the device registry
its no-data rules expect devices from) and validates it before the service swaps it in.

The check runs in the service's loop, between two passes (a `stat` of two files every `interval_s`), so the
swap needs no lock. A file that fails validation leaves the running rules in place; `error` says why until a
later edit loads, and the service reports it on ``/healthz`` and in the log. An edit saved in several writes
is simply loaded again at its next change.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from telestack.alerting.expected import load_expected
from telestack.alerting.rules import RuleSet, load_rules
from telestack.core.errors import TelestackError

__all__ = ["LoadedRules", "RulesWatcher", "load_all"]


@dataclass(frozen=True, slots=True)
class LoadedRules:
    """A validated rule set and the devices its no-data rules expect (rule name → device ids)."""

    ruleset: RuleSet
    expected: dict[str, tuple[str, ...]]


def load_all(rules_file: Path, devices_file: Path) -> LoadedRules:
    """Load and validate the rules and resolve their expected devices; raises a `TelestackError` naming the file."""
    ruleset = load_rules(rules_file)
    return LoadedRules(ruleset, load_expected(ruleset, devices_file))


def _mtimes(paths: tuple[Path, ...]) -> tuple[int | None, ...]:
    result: list[int | None] = []
    for path in paths:
        try:
            result.append(path.stat().st_mtime_ns)
        except OSError:
            result.append(None)
    return tuple(result)


class RulesWatcher:
    """Polls the files' modification times; `poll()` returns freshly validated rules once after each edit."""

    def __init__(
        self,
        rules_file: Path,
        devices_file: Path,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules_file = rules_file
        self.devices_file = devices_file
        self.interval_s = interval_s
        self.clock = clock
        self._files = (rules_file, devices_file)
        self._mtimes = _mtimes(self._files)
        self._next = clock() + interval_s
        self.error: str | None = None  # why the last edit was refused, until one loads
        self.error_at: float | None = None  # epoch s
        self.loaded_at = time.time()

    def poll(self) -> LoadedRules | None:
        """New rules after an edit that validates; None when nothing changed or the edit was refused."""
        if self.interval_s <= 0 or self.clock() < self._next:
            return None
        self._next = self.clock() + self.interval_s
        seen = _mtimes(self._files)
        if seen == self._mtimes:
            return None
        self._mtimes = seen  # a broken file is tried again only after its next change
        try:
            loaded = load_all(self.rules_file, self.devices_file)
        except TelestackError as exc:
            self.error, self.error_at = str(exc), time.time()
            raise
        self.error = self.error_at = None
        self.loaded_at = time.time()
        return loaded

    def refused(self, error: str) -> None:
        """Record that rules which validated could still not be applied (e.g. a notifier's secret is missing)."""
        self.error, self.error_at = error, time.time()
