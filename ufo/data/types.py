"""Plain records shared by readers, training, evaluation and search."""

from __future__ import annotations

from dataclasses import dataclass, field


class DataError(ValueError):
    """A dataset problem, with a message naming the file or folder and what is wrong."""


@dataclass(frozen=True)
class Sample:
    path: str  # image file
    label: int  # identity / product id
    camera: int = -1  # camera id (re-id); -1 when the layout has none


@dataclass(frozen=True)
class EvalSet:
    """Images to embed and how to score them.

    re-id (person, vehicle): query and gallery are disjoint lists; same-identity same-camera gallery
    images are excluded per query (Market-1501 protocol).
    product: query is gallery (pass the same list); each query excludes itself.
    face: query is gallery; `pairs` holds (i, j, same) index pairs into that list.
    """

    query: list[Sample]
    gallery: list[Sample]
    pairs: list[tuple[int, int, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class TaskData:
    task: str
    train: list[Sample]  # labels remapped to 0..num_classes-1
    num_classes: int
    val: EvalSet  # identities held out from training: the search scores on these
    test: EvalSet  # the dataset's own test identities: only the final report uses these
