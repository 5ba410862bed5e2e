"""Errors of the identity core. None is retriable: each names data that cannot be used.

IdentityError
├── InvalidIdentifier       a value that cannot be an identifier of its type (kept out of claims)
│   └── BlockedIdentifier   a placeholder such as "null" or "guest" (never merges anything)
├── MergeCycleError         an alias mapping that loops, or an alias that would close a loop
└── InvalidMerge            merge inputs that break the rules (not canonical, wrong winner,
                            a profile the adapter did not load)
"""

from __future__ import annotations

__all__ = [
    "BlockedIdentifier",
    "IdentityError",
    "InvalidIdentifier",
    "InvalidMerge",
    "MergeCycleError",
]


class IdentityError(Exception):
    retriable = False


class InvalidIdentifier(IdentityError):
    def __init__(self, identifier_type: str, reason: str) -> None:
        super().__init__(f"{identifier_type}: {reason}")
        self.identifier_type = identifier_type
        self.reason = reason


class BlockedIdentifier(InvalidIdentifier):
    pass


class MergeCycleError(IdentityError):
    def __init__(self, path: tuple[str, ...]) -> None:
        super().__init__("merge cycle refused: " + " -> ".join(path))
        self.path = path


class InvalidMerge(IdentityError):
    pass
