"""The exceptions of the alerting service, rooted at `TelestackError`.

TelestackError
└── AlertingError
    ├── RuleError          a rules file that cannot be loaded; names the file and the line of each problem
    ├── NotifierError      one notification could not be delivered (the worker retries it)
    └── StateStoreError    the durable alert state could not be read or written
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from telestack.core.errors import TelestackError

__all__ = ["AlertingError", "NotifierError", "RuleError", "RuleProblem", "StateStoreError"]


class AlertingError(TelestackError):
    """Base of the alerting service's exceptions."""


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One problem in a rules file: where it is (1-based line, or None) and what is wrong."""

    line: int | None
    where: str
    message: str

    def format(self, source: str) -> str:
        position = f"{source}:{self.line}" if self.line is not None else source
        where = f" {self.where}:" if self.where else ""
        return f"{position}:{where} {self.message}"


class RuleError(AlertingError, ValueError):
    """A rules file is invalid; the message lists every problem as ``file:line: where: what``."""

    def __init__(self, source: str | Path, problems: Sequence[RuleProblem]) -> None:
        self.source = str(source)
        self.problems = tuple(problems)
        lines = "\n".join("  " + problem.format(self.source) for problem in self.problems)
        count = len(self.problems)
        super().__init__(f"invalid alert rules in {self.source} ({count} problem{'s' * (count != 1)}):\n{lines}")


class NotifierError(AlertingError):
    """A notifier failed to deliver one notification."""


class StateStoreError(AlertingError):
    """The durable alert state store failed."""
