"""The progress of one model upgrade: written by `service.worker.upgrade`, read by the routes (GET .../model).

One typed record per task (held by its `IndexFollower`), replaced as the upgrade moves on; `to_dict` is the
JSON the API reports (the key `from` is a Python keyword, hence `from_version`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

UpgradeState = Literal["running", "done", "failed"]


@dataclass(frozen=True, slots=True)
class UpgradeStatus:
    """State, target and source versions, images embedded, items without one, items dropped, the error."""

    state: UpgradeState
    model_version: str
    from_version: str
    embedded: int = 0
    missing: int = 0
    dropped: int | None = None
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    seconds: float | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def but(self, **changes: Any) -> UpgradeStatus:
        """A copy with `changes` (the status is immutable: readers never see a half-written one)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The API's view: `from` for `from_version`, unset timings and counts left out."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["from"] = out.pop("from_version")
        return out
