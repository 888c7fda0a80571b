"""What a task serves, as one value: the model version (and the backend's description of it), its index and
the searcher that searches it. Replaced by one assignment at a cut-over (`IndexFollower.cut_over`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.index import CoalescingSearcher
    from service.index.engine import IndexEngine
    from service.inference import ModelInfo


@dataclass(frozen=True, slots=True)
class Serving:
    """What a task serves, as one value replaced by one assignment at a cut-over: embed a query with
    `model_version` (`info`, the backend's description of it, in the gateway), search it in `index` through
    `searcher` (the gateway's coalescing searcher, shared across cut-overs; None in workers and tests)."""

    model_version: str
    index: IndexEngine
    searcher: CoalescingSearcher | None = None
    info: ModelInfo | None = None

    def but(self, index: IndexEngine, info: ModelInfo | None = None) -> Serving:
        """The next model's serving: its index, the same searcher."""
        return Serving(index.model_version, index, self.searcher, info)
