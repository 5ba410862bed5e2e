"""The workflow core's errors; every message names the problem and what is valid.

ValueError
├── RuleFileError          a rule file is invalid: ``problems`` lists every one; no rule loads
├── RenderError            an action could not be rendered (a missing field, a bad value):
│                          recorded as a failed ``ActionOutcome``, evaluation goes on
└── UnsafeWebhookTarget    delivery refused (scheme, or a private/loopback/link-local address
                           that is not allow-listed); never retriable -> dead letter
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RenderError", "RuleFileError", "RuleProblem", "UnsafeWebhookTarget"]


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One problem: ``rule "big-spender" then[1].action: 'tagg' is not one of tag, ...``."""

    rule: str | None  # 'rule "big-spender"' or 'rule #2'; None for the file as a whole
    path: str  # the field path inside the rule, '' for the rule or the file itself
    message: str

    def __str__(self) -> str:
        where = " ".join(part for part in (self.rule or "file", self.path) if part)
        return f"{where}: {self.message}"


class RuleFileError(ValueError):
    retriable = False

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in the rule file:\n{lines}")


class RenderError(ValueError):
    """``path`` is the field that was missing or bad, when there is one."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


class UnsafeWebhookTarget(ValueError):
    retriable = False
    code = "unsafe_webhook_target"

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"webhook target {url!r} refused: {reason}")
        self.url = url
        self.reason = reason
