"""Readers for the standard retrieval layouts. Each returns `list[Sample]` (or pairs for face verification).

Every problem is raised as `DataError` naming the file or folder and what is wrong; nothing is skipped
silently. Files whose extension is not an image extension (Market ships `Thumbs.db`) are not images and are
ignored; a file with an image extension and a name the layout does not allow is an error.

Layouts (folder names as the datasets ship them):
- Market-1501 / MSMT17 (Market-style release): `bounding_box_train/`, `query/`, `bounding_box_test/`, names
  `0002_c1s1_000451_03.jpg` (identity, then camera from `c<N>`). Market's junk images (identity -1) are
  dropped, as Market's protocol ignores them; its distractors (identity 0000) stay in the gallery with label 0,
  which no query has, so they only ever count as wrong matches — exactly Market's protocol. (In MSMT17, 0 is a
  real identity; keeping it as a normal label is right there too.)
- VeRi-776: `image_train/`, `image_query/`, `image_test/`, names `0001_c001_00016450_0.jpg`.
- Stanford Online Products: `Ebay_train.txt` / `Ebay_test.txt`, header `image_id class_id super_class_id
  path`, paths relative to the dataset root; label = class_id (super_class_id is checked, not kept).
- Class folders (generic, and face identities): one folder per class; label = index of the folder in
  natural-sorted order. Files are natural-sorted too (digit runs compare as numbers, so `2.pgm` < `10.pgm`;
  for zero-padded LFW names this is plain lexical order).
- LFW-style pairs file: lines `name i j` (same person) or `name1 i name2 j` (different), tab or space
  separated, `i` = the number in the file name when every file of that identity is named `<name>_<n>.<ext>`
  (LFW), else the 1-based position in its sorted file list; an optional first line of one or two integers
  (LFW's fold/pair counts) is a header.

The official list-file releases (MSMT17 V1 / V2, VeRi-776 name lists + XML labels) and the choice of re-id
layout for a task folder are in `ufo.data.readers_lists`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ufo.data.types import DataError, Sample

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".webp", ".tif", ".tiff"})

MARKET_SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
VERI_SPLITS = {"train": "image_train", "query": "image_query", "gallery": "image_test"}
SOP_SPLITS = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}
SOP_HEADER = ["image_id", "class_id", "super_class_id", "path"]

_MARKET_NAME = re.compile(r"^(-1|\d+)_c(\d+)")
_VERI_NAME = re.compile(r"^(\d+)_c(\d+)_")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as numbers: s2 < s10, 2.pgm < 10.pgm."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(name))


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _require_dir(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        raise DataError(f"broken layout: {what} folder {folder} does not exist")
    return folder


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, natural-sorted; empty files are an error (a failed copy)."""
    folder = _require_dir(Path(folder), "image")
    files = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.is_file() or not is_image_file(entry.name):
                continue
            if entry.stat().st_size == 0:
                raise DataError(f"unreadable image {folder / entry.name}: the file is empty")
            files.append(folder / entry.name)
    return sorted(files, key=lambda p: natural_key(p.name))


def _split_folder(root: str | Path, split: str, folders: dict[str, str], layout: str) -> Path:
    if split not in folders:
        raise ValueError(f"unknown {layout} split {split!r}; expected one of {', '.join(folders)}")
    root = _require_dir(Path(root), f"{layout} root")
    return _require_dir(root / folders[split], f"{layout} {split}")


def _read_named_images(folder: Path, pattern: re.Pattern, example: str, layout: str) -> list[Sample]:
    samples = []
    dropped = 0
    for path in list_images(folder):
        match = pattern.match(path.name)
        if match is None:
            raise DataError(f"malformed {layout} file name {path}: expected names like {example}")
        label, camera = int(match.group(1)), int(match.group(2))
        if label == -1:  # Market junk: ignored by the protocol
            dropped += 1
            continue
        samples.append(Sample(str(path), label, camera))
    if not samples:
        raise DataError(f"empty {layout} folder {folder}: no images")
    if dropped:
        log.info("%s: ignored %d junk images (identity -1), as Market's protocol does", folder, dropped)
    return samples


def read_market(root: str | Path, split: str) -> list[Sample]:
    """Market-1501 / MSMT17 split 'train' | 'query' | 'gallery'; labels are the file names' identities."""
    folder = _split_folder(root, split, MARKET_SPLITS, "Market")
    return _read_named_images(folder, _MARKET_NAME, "0002_c1s1_000451_03.jpg", "Market")


def read_veri(root: str | Path, split: str) -> list[Sample]:
    """VeRi-776 split 'train' | 'query' | 'gallery'; labels are the file names' vehicle ids."""
    folder = _split_folder(root, split, VERI_SPLITS, "VeRi")
    return _read_named_images(folder, _VERI_NAME, "0001_c001_00016450_0.jpg", "VeRi")


def read_sop(root: str | Path, split: str) -> list[Sample]:
    """Stanford Online Products split 'train' | 'test' from Ebay_<split>.txt; label = class_id."""
    if split not in SOP_SPLITS:
        raise ValueError(f"unknown SOP split {split!r}; expected one of {', '.join(SOP_SPLITS)}")
    root = _require_dir(Path(root), "SOP root")
    list_file = root / SOP_SPLITS[split]
    if not list_file.is_file():
        raise DataError(f"broken layout: SOP list file {list_file} does not exist")
    lines = list_file.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split() != SOP_HEADER:
        raise DataError(f"malformed SOP list {list_file} line 1: expected header {' '.join(SOP_HEADER)!r}")
    samples = []
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            samples.append(_parse_sop_line(line, root, list_file, number))
    if not samples:
        raise DataError(f"empty SOP list {list_file}: no images after the header")
    return samples


def _parse_sop_line(line: str, root: Path, list_file: Path, number: int) -> Sample:
    fields = line.split()
    if len(fields) != 4 or not all(f.isdigit() for f in fields[:3]):
        raise DataError(
            f"malformed SOP list {list_file} line {number}: expected 'image_id class_id super_class_id path',"
            f" got {line.strip()!r}"
        )
    path = root / fields[3]
    if not path.is_file():
        raise DataError(f"SOP list {list_file} line {number}: image {path} does not exist")
    return Sample(str(path), int(fields[1]))


def list_class_folders(folder: str | Path) -> list[tuple[str, list[Path]]]:
    """(class name, natural-sorted image files) per sub-folder of `folder`, natural-sorted by name."""
    folder = _require_dir(Path(folder), "class")
    names = sorted((e.name for e in os.scandir(folder) if e.is_dir()), key=natural_key)
    if not names:
        raise DataError(f"broken layout: {folder} has no class folders (expected one folder per class)")
    classes = []
    for name in names:
        files = list_images(folder / name)
        if not files:
            raise DataError(f"empty identity folder {folder / name}: no images")
        classes.append((name, files))
    return classes


def read_class_folders(folder: str | Path) -> list[Sample]:
    """Generic one-folder-per-class layout; label = index of the class folder in natural-sorted order."""
    return [
        Sample(str(path), label) for label, (_, files) in enumerate(list_class_folders(folder)) for path in files
    ]


def read_face_folders(folder: str | Path) -> list[Sample]:
    """Face identities, one folder each (LFW / CASIA style); same order and labels as read_class_folders."""
    return read_class_folders(folder)


def lfw_numbers(name: str, files: list[Path]) -> dict[int, int] | None:
    """{n: position in `files`} when every file is named `<name>_<n>.<ext>` (LFW), else None: then the pairs
    file's numbers are positions in the sorted list (ORL's `1.pgm ... 10.pgm`)."""
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)$")
    matches = [pattern.match(Path(f).stem) for f in files]
    if not matches or not all(matches):
        return None
    return {int(m.group(1)): position for position, m in enumerate(matches)}


def read_face_pairs(pairs_file: str | Path, folder: str | Path) -> list[tuple[int, int, bool]]:
    """LFW-style pairs as (i, j, same) indices into `read_face_folders(folder)`."""
    pairs_file = Path(pairs_file)
    if not pairs_file.is_file():
        raise DataError(f"broken layout: pairs file {pairs_file} does not exist")
    classes = list_class_folders(folder)
    offsets, counts, numbered, start = {}, {}, {}, 0
    for name, files in classes:
        offsets[name], counts[name], numbered[name] = start, len(files), lfw_numbers(name, files)
        start += len(files)

    def index_of(name: str, number: str, line_no: int) -> int:
        if name not in offsets:
            raise DataError(f"pairs file {pairs_file} line {line_no}: no identity folder {name!r} in {folder}")
        i = int(number)
        top = max(numbered[name]) if numbered[name] else counts[name]
        if not 1 <= i <= top:
            raise DataError(f"pairs file {pairs_file} line {line_no}: image {i} of {name!r} out of range 1..{top}")
        if numbered[name] is None:
            return offsets[name] + i - 1
        if i not in numbered[name]:  # a gap in LFW's numbering: positions would silently shift to other files
            raise DataError(f"pairs file {pairs_file} line {line_no}: image {name}_{i:04d} is missing from "
                            f"{Path(folder) / name}")
        return offsets[name] + numbered[name][i]

    pairs = []
    lines = pairs_file.read_text(encoding="utf-8").splitlines()
    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or (line_no == 1 and len(fields) <= 2 and all(f.isdigit() for f in fields)):
            continue  # blank line, or LFW's header of fold / pair counts
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            pairs.append((index_of(fields[0], fields[1], line_no), index_of(fields[0], fields[2], line_no), True))
        elif len(fields) == 4 and fields[1].isdigit() and fields[3].isdigit():
            pairs.append((index_of(fields[0], fields[1], line_no), index_of(fields[2], fields[3], line_no), False))
        else:
            raise DataError(
                f"malformed pairs file {pairs_file} line {line_no}: expected 'name i j' or 'name1 i name2 j',"
                f" got {line.strip()!r}"
            )
    if not pairs:
        raise DataError(f"empty pairs file {pairs_file}: no pairs")
    return pairs
