"""Configuration problems: where each one is (file, line, key path) and what is wrong, reported all at once.

The lowest layer of hpcfit: the config readers, the engine and the jobs raise these; this module imports nothing
of hpcfit.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration: where it is and what is wrong."""

    source: str  # file name, or "--set" for command-line overrides
    line: int | None
    path: str  # dotted key path, "" for the whole file
    message: str
    allowed: str | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        key = f" {self.path}:" if self.path else ""
        allowed = f" (allowed: {self.allowed})" if self.allowed else ""
        return f"{where}:{key} {self.message}{allowed}"


@dataclass
class ConfigError(Exception):
    """All the problems found in a configuration, reported together."""

    issues: list[ConfigIssue] = field(default_factory=list)

    def __str__(self) -> str:
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} in the configuration:"
        return "\n".join([head] + [f"  {issue}" for issue in self.issues])
