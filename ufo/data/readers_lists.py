"""Readers for the official list-file releases, and the re-id layouts a task folder may hold.

Same contract as `ufo.data.readers`: each reader returns `list[Sample]`, and every problem is a `DataError`
naming the file (and line) and what is wrong; nothing is skipped silently. Every listed image must exist
and be non-empty.

Layouts (file names as the datasets ship them):
- MSMT17 V1 / V2: image folders `train/` and `test/` (V2: `mask_train_v2/`, `mask_test_v2/`) and the lists
  `list_train.txt`, `list_val.txt` (optional), `list_query.txt`, `list_gallery.txt`; each line
  `<path> <pid>`, e.g. `0000/0000_000_01_0303morning_0015_0.jpg 0`, the path relative to the train folder
  (train / val lists) or the test folder (query / gallery lists). Camera = the third `_` field of the file
  name (`01` -> 1; 15 cameras). Train and test pids both start at 0: they are different people, which is
  fine as test labels are only compared within the test EvalSet.
- VeRi-776 lists: `name_train.txt`, `name_query.txt`, `name_test.txt` (one file name per line, images in
  `image_train/`, `image_query/`, `image_test/`), optionally `train_label.xml` / `test_label.xml`
  (`<TrainingImages>` / `<TestImages>` -> `<Items>` -> `<Item imageName=.. vehicleID="0001"
  cameraID="c001" ../>`). Identity and camera come from the XML when the file is there, else from the file
  name (`0001_c001_00016450_0.jpg`). The XML must list exactly the names of its list (train: name_train,
  gallery: name_test); query names are looked up in test_label.xml, as VeRi's query images are test
  images, and fall back to the file name when absent.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ufo.data.readers import _VERI_NAME, _require_dir, read_market, read_veri
from ufo.data.types import DataError, Sample

MSMT17_LISTS = {"train": ("list_train.txt", "list_val.txt"), "query": ("list_query.txt",),
                "gallery": ("list_gallery.txt",)}
MSMT17_OPTIONAL = frozenset({"list_val.txt"})
MSMT17_IMAGE_DIRS = {"train": ("train", "mask_train_v2", "mask_train_V2"),
                     "test": ("test", "mask_test_v2", "mask_test_V2")}
MSMT17_EXAMPLE = "0000/0000_000_01_0303morning_0015_0.jpg 0"

VERI_LISTS = {"train": ("name_train.txt", "image_train", "train_label.xml"),
              "query": ("name_query.txt", "image_query", "test_label.xml"),
              "gallery": ("name_test.txt", "image_test", "test_label.xml")}

_XML_DECLARATION = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_XML_DECLARATION_TEXT = re.compile(r"^\ufeff?\s*<\?xml[^>]*\?>")
_GB_ENCODINGS = frozenset({"gb2312", "gbk", "gb18030", "euc-cn", "cp936"})
_VERI_CAMERA = re.compile(r"^c?(\d+)$")


def _check_split(split: str, splits: dict, layout: str) -> None:
    if split not in splits:
        raise ValueError(f"unknown {layout} split {split!r}; expected one of {', '.join(splits)}")


def _require_list(list_file: Path, layout: str, expected: str) -> Path:
    if not list_file.is_file():
        raise DataError(f"broken layout: list file {list_file} does not exist (the {layout} layout expects"
                        f" {expected})")
    return list_file


def _list_lines(list_file: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) for every non-blank line."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"unreadable list file {list_file}: not UTF-8 text at byte {error.start}") from None
    return [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]


def _require_image(path: Path, where: str) -> Path:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"{where}: image {path} does not exist") from None
    if size == 0:
        raise DataError(f"unreadable image {path} ({where}): the file is empty")
    return path


def _msmt17_image_dir(root: Path, part: str) -> Path:
    for name in MSMT17_IMAGE_DIRS[part]:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"broken layout: MSMT17 {part} image folder missing in {root}: expected {part}/ (V1) or"
                    f" mask_{part}_v2/ (V2) next to the list files")


def _parse_msmt17_line(line: str, where: str, image_dir: Path) -> Sample:
    fields = line.split()
    if len(fields) != 2 or not fields[1].isdigit():
        raise DataError(f"malformed MSMT17 list {where}: expected '<path under {image_dir.name}/> <pid>' like"
                        f" {MSMT17_EXAMPLE!r}, got {line!r}")
    parts = PurePosixPath(fields[0]).name.split("_")
    if len(parts) < 3 or not parts[2].isdigit():
        raise DataError(f"malformed MSMT17 file name {fields[0]!r} in {where}: expected names like"
                        f" 0000_000_01_0303morning_0015_0.jpg (camera = third field)")
    path = _require_image(image_dir / fields[0], where)
    return Sample(str(path), int(fields[1]), int(parts[2]))


def read_msmt17(root: str | Path, split: str) -> list[Sample]:
    """MSMT17 (V1 / V2 official release) split 'train' | 'query' | 'gallery'; label = the listed pid.

    'train' is list_train.txt plus list_val.txt when present: the common practice trains on both (together
    they are the paper's 32,621 training images); labels are the listed pids either way.
    """
    _check_split(split, MSMT17_LISTS, "MSMT17")
    root = _require_dir(Path(root), "MSMT17 root")
    image_dir = _msmt17_image_dir(root, "train" if split == "train" else "test")
    expected = "list_train.txt, list_query.txt, list_gallery.txt next to train/ and test/"
    samples = []
    for name in MSMT17_LISTS[split]:
        list_file = root / name
        if name in MSMT17_OPTIONAL and not list_file.exists():
            continue
        _require_list(list_file, "MSMT17", expected)
        samples += [_parse_msmt17_line(line, f"{list_file} line {number}", image_dir)
                    for number, line in _list_lines(list_file)]
    if not samples:
        raise DataError(f"empty MSMT17 {split} list in {root}: no images")
    return samples


def _decode_xml(data: bytes, path: Path) -> str:
    """XML bytes -> text by the declared encoding (UTF-8 when none). ElementTree cannot parse bytes that
    declare a multi-byte encoding (VeRi declares gb2312: "multi-byte encodings are not supported"), so the
    text is decoded here; gb2312 is read as gb18030, its superset, as files labelled gb2312 often hold GBK."""
    match = _XML_DECLARATION.match(data)
    declared = match.group(1).decode("ascii") if match else "utf-8"
    encoding = "gb18030" if declared.lower() in _GB_ENCODINGS else declared
    if data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except LookupError:
        message = f"unreadable label file {path}: unknown encoding {declared!r} in its XML declaration"
        raise DataError(message) from None
    except UnicodeDecodeError as error:
        raise DataError(f"unreadable label file {path}: not valid {declared} at byte {error.start}") from None


def _parse_veri_item(item: ET.Element, index: int, path: Path) -> tuple[str, int, int]:
    name, vehicle, camera = (item.get(key, "") for key in ("imageName", "vehicleID", "cameraID"))
    camera_match = _VERI_CAMERA.match(camera)
    if not name or not vehicle.isdigit() or camera_match is None:
        raise DataError(f"malformed VeRi label file {path}: <Item> {index} needs imageName, vehicleID (digits)"
                        f" and cameraID (like c001), got {dict(item.attrib)}")
    return name, int(vehicle), int(camera_match.group(1))


def read_veri_labels(path: str | Path) -> dict[str, tuple[int, int]]:
    """VeRi train_label.xml / test_label.xml -> {imageName: (vehicle id, camera id)}."""
    path = Path(path)
    text = _XML_DECLARATION_TEXT.sub("", _decode_xml(path.read_bytes(), path), count=1)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise DataError(f"malformed VeRi label file {path}: {error}") from None
    items = root.find("Items")
    if items is None:
        raise DataError(f"malformed VeRi label file {path}: no <Items> under <{root.tag}>")
    labels: dict[str, tuple[int, int]] = {}
    for index, item in enumerate(items.findall("Item"), start=1):
        name, vehicle, camera = _parse_veri_item(item, index, path)
        if name in labels:
            raise DataError(f"malformed VeRi label file {path}: <Item> {index}: {name} is listed twice")
        labels[name] = (vehicle, camera)
    if not labels:
        raise DataError(f"empty VeRi label file {path}: no <Item> under <Items>")
    return labels


def _read_name_list(list_file: Path) -> list[tuple[int, str]]:
    names: dict[str, int] = {}
    for number, line in _list_lines(list_file):
        if len(line.split()) != 1:
            raise DataError(f"malformed VeRi list {list_file} line {number}: expected one file name, got {line!r}")
        if line in names:
            raise DataError(f"VeRi list {list_file} line {number}: {line} already listed on line {names[line]}")
        names[line] = number
    if not names:
        raise DataError(f"empty VeRi list {list_file}: no file names")
    return [(number, name) for name, number in names.items()]


def _check_same_names(names: set[str], labels: dict[str, tuple[int, int]], list_file: Path, xml: Path) -> None:
    only_list, only_xml = sorted(names - labels.keys()), sorted(labels.keys() - names)
    if only_list or only_xml:
        raise DataError(
            f"VeRi {list_file} and {xml} disagree: {len(only_list)} names only in {list_file.name}"
            f" (e.g. {only_list[:3]}), {len(only_xml)} only in {xml.name} (e.g. {only_xml[:3]})"
        )


def _veri_name_ids(name: str, where: str) -> tuple[int, int]:
    match = _VERI_NAME.match(name)
    if match is None:
        raise DataError(f"malformed VeRi file name {name!r} in {where}: expected names like"
                        f" 0001_c001_00016450_0.jpg")
    return int(match.group(1)), int(match.group(2))


def read_veri_lists(root: str | Path, split: str) -> list[Sample]:
    """VeRi-776 split 'train' | 'query' | 'gallery' from the official name lists; identity and camera from
    train_label.xml / test_label.xml when present, else from the file names (module docstring)."""
    _check_split(split, VERI_LISTS, "VeRi")
    list_name, folder, xml_name = VERI_LISTS[split]
    root = _require_dir(Path(root), "VeRi root")
    list_file = _require_list(root / list_name, "VeRi-776 lists", "name_train.txt, name_query.txt, name_test.txt"
                              " with image_train/, image_query/, image_test/")
    image_dir = _require_dir(root / folder, f"VeRi {split}")
    names = _read_name_list(list_file)
    xml = root / xml_name
    labels = read_veri_labels(xml) if xml.is_file() else {}
    if labels and split != "query":
        _check_same_names({name for _, name in names}, labels, list_file, xml)
    samples = []
    for number, name in names:
        where = f"{list_file} line {number}"
        path = _require_image(image_dir / name, where)
        label, camera = labels[name] if name in labels else _veri_name_ids(name, where)
        samples.append(Sample(str(path), label, camera))
    return samples


@dataclass(frozen=True)
class ReidLayout:
    """A re-id layout a task folder may hold: what it needs (each need: alternative names, `/` = folder)."""

    name: str
    needs: tuple[tuple[str, ...], ...]
    read: Callable[[str | Path, str], list[Sample]]

    def missing(self, folder: Path) -> list[str]:
        """The needs `folder` lacks, each written as its alternatives joined by ' or '."""
        return [" or ".join(need) for need in self.needs if not any(_exists(folder, n) for n in need)]

    def describe(self) -> str:
        return ", ".join(" or ".join(need) for need in self.needs)


def _exists(folder: Path, name: str) -> bool:
    return (folder / name).is_dir() if name.endswith("/") else (folder / name).is_file()


MARKET_LAYOUT = ReidLayout("Market-1501", (("bounding_box_train/",), ("query/",), ("bounding_box_test/",)),
                           read_market)
MSMT17_LAYOUT = ReidLayout(
    "MSMT17", (("list_train.txt",), ("list_query.txt",), ("list_gallery.txt",),
               ("train/", "mask_train_v2/", "mask_train_V2/"), ("test/", "mask_test_v2/", "mask_test_V2/")),
    read_msmt17,
)
VERI_LAYOUT = ReidLayout("VeRi-776 folders", (("image_train/",), ("image_query/",), ("image_test/",)), read_veri)
VERI_LISTS_LAYOUT = ReidLayout(
    "VeRi-776 lists", (("name_train.txt",), ("name_query.txt",), ("name_test.txt",), *VERI_LAYOUT.needs),
    read_veri_lists,
)


def detect_reid_layout(folder: Path, layouts: tuple[ReidLayout, ...], task: str) -> ReidLayout:
    """The first of `layouts` whose needs `folder` meets; else one DataError listing what each needs."""
    for layout in layouts:
        if not layout.missing(folder):
            return layout
    details = "; ".join(f"{layout.name} needs {layout.describe()} (missing: {', '.join(layout.missing(folder))})"
                        for layout in layouts)
    raise DataError(f"broken layout: {task} folder {folder} holds none of the {task} layouts: {details}")
