"""What the core refuses, by kind, not by protocol: `service.api.errors` maps each kind to its HTTP status.

Each error carries the detail a client reads, an optional problem-type slug (the HTTP layer picks the kind's
own when there is none) and, for the kinds that pass, how long to wait before retrying.
"""

from __future__ import annotations


class CoreError(Exception):
    """A request the core refuses on purpose."""

    def __init__(self, detail: str, *, slug: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.slug = slug
        self.retry_after_s = retry_after_s


class Invalid(CoreError):
    """The request is well-formed but says something the task cannot use (a bad id, embedding or metadata, a
    model version that fails the parity gate)."""


class NotFound(CoreError):
    """What the request names does not exist (a task, an item, a model version)."""


class Conflict(CoreError):
    """The request clashes with the task's state (an upgrade running, no threshold); retrying as is may not help."""


class Unavailable(CoreError):
    """The task cannot answer now (no index, a replica adopting a model, a backend away); retry after a while."""
