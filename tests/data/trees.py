"""Small dataset trees in the real layouts, written under a test's tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (16, 8)) -> Path:
    """A small random RGB image (size = (W, H)), saved in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_reid_tree(root: Path, folders: tuple[str, str, str], name, train_ids: int = 6, test_ids: int = 3,
                   cameras: int = 3, per_camera: int = 2) -> Path:
    """Re-id layout: every identity has `per_camera` images in each camera; test ids split query/gallery."""
    seed = 0
    for split, ids in ((folders[0], range(1, train_ids + 1)), (None, range(100, 100 + test_ids))):
        for identity in ids:
            for camera in range(1, cameras + 1):
                for k in range(per_camera):
                    seed += 1
                    folder = split or (folders[1] if k == 0 and camera < 3 else folders[2])
                    write_image(root / folder / name(identity, camera, seed), seed)
    return root


def market_name(identity: int, camera: int, frame: int) -> str:
    pid = "-1" if identity < 0 else f"{identity:04d}"
    return f"{pid}_c{camera}s1_{frame:06d}_01.jpg"


def veri_name(identity: int, camera: int, frame: int) -> str:
    return f"{identity:04d}_c{camera:03d}_{frame:08d}_0.jpg"


def make_market(root: Path, **kwargs) -> Path:
    return make_reid_tree(root, ("bounding_box_train", "query", "bounding_box_test"), market_name, **kwargs)


def make_veri(root: Path, **kwargs) -> Path:
    return make_reid_tree(root, ("image_train", "image_query", "image_test"), veri_name, **kwargs)


def make_sop(root: Path, train_classes: int = 6, test_classes: int = 3, per_class: int = 3) -> Path:
    image_id = 0
    for split, classes in (("train", range(1, train_classes + 1)),
                           ("test", range(train_classes + 1, train_classes + test_classes + 1))):
        lines = ["image_id class_id super_class_id path"]
        for class_id in classes:
            for view in range(per_class):
                image_id += 1
                rel = f"cat{class_id % 2}_final/{class_id:06d}_{view}.JPG"
                write_image(root / rel, image_id)
                lines.append(f"{image_id} {class_id} {class_id % 2 + 1} {rel}")
        (root / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_face_folders(folder: Path, people: list[str], per_person: int = 3, suffix: str = ".png") -> Path:
    seed = 0
    for name in people:
        for i in range(1, per_person + 1):
            seed += 1
            write_image(folder / name / f"{name}_{i:04d}{suffix}", seed)
    return folder


def make_face_task(root: Path, train_people: int = 10, test_people: int = 4, per_person: int = 3) -> Path:
    make_face_folders(root / "train", [f"p{i}" for i in range(train_people)], per_person)
    test = [f"t{i}" for i in range(test_people)]
    make_face_folders(root / "test", test, per_person)
    lines = ["1\t2", f"{test[0]}\t1\t2", f"{test[1]}\t2\t3"]
    lines += [f"{test[0]}\t1\t{test[1]}\t3", f"{test[2]}\t2\t{test[3]}\t1"]
    (root / "test" / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def msmt17_name(identity: int, camera: int, frame: int) -> str:
    return f"{identity:04d}_{frame % 1000:03d}_{camera:02d}_0303morning_{frame:04d}_0.jpg"


def make_msmt17(root: Path, train_ids: int = 6, test_ids: int = 3, cameras: int = 3, per_camera: int = 2,
                folders: tuple[str, str] = ("train", "test"), val: bool = True) -> Path:
    """MSMT17 release: images in `<folder>/<pid>/`, list lines `<pid>/<name> <pid>`. Train and test pids both
    start at 0 as in the real lists; the second image of each train id in camera 1 goes to list_val.txt."""
    lists: dict[str, list[str]] = {"train": [], "val": [], "query": [], "gallery": []}
    seed = 0
    for part, ids in ((folders[0], range(train_ids)), (folders[1], range(test_ids))):
        for identity in ids:
            for camera in range(1, cameras + 1):
                for k in range(per_camera):
                    seed += 1
                    rel = f"{identity:04d}/{msmt17_name(identity, camera, seed)}"
                    write_image(root / part / rel, seed)
                    if part == folders[0]:
                        key = "val" if val and k == 1 and camera == 1 else "train"
                    else:
                        key = "query" if k == 0 and camera < 3 else "gallery"
                    lists[key].append(f"{rel} {identity}")
    for key, lines in lists.items():
        if key != "val" or val:
            (root / f"list_{key}.txt").write_text("\n".join(lines) + "\n")
    return root


def veri_label_xml(names: list[str], root_tag: str = "TrainingImages") -> bytes:
    """A VeRi label file as shipped: gb2312 declaration, CRLF lines; a Chinese comment makes the
    encoding matter (multi-byte)."""
    items = [f'<Item imageName="{n}" vehicleID="{n[:4]}" cameraID="{n[5:9]}" colorID="1" typeID="4" />'
             for n in names]
    lines = ['<?xml version="1.0" encoding="gb2312"?>', f'<{root_tag} Version="1.0">', "<!-- 车辆标注 -->",
             f'<Items number="{len(names)}">', *items, "</Items>", f"</{root_tag}>"]
    return ("\r\n".join(lines) + "\r\n").encode("gb2312")


def make_veri_lists(root: Path, xml: bool = True, **kwargs) -> Path:
    """VeRi-776 release: the folders, name lists, and (xml) train_label.xml / test_label.xml. As in the real
    set, the query images are test images too (copied into image_test/ and name_test.txt)."""
    make_veri(root, **kwargs)
    (root / "image_test").mkdir(exist_ok=True)
    for query in sorted((root / "image_query").iterdir()):
        (root / "image_test" / query.name).write_bytes(query.read_bytes())
    for split, folder in (("train", "image_train"), ("query", "image_query"), ("test", "image_test")):
        names = sorted(p.name for p in (root / folder).iterdir())
        (root / f"name_{split}.txt").write_text("\n".join(names) + "\n")
        if xml and split != "query":
            tag = "TrainingImages" if split == "train" else "TestImages"
            (root / f"{split}_label.xml").write_bytes(veri_label_xml(names, tag))
    return root


def make_lfw(folder: Path, people: list[str], per_person: int = 3, pairs: list[str] | None = None) -> Path:
    """LFW's `lfw/<Name>/<Name>_0001.jpg` folders with LFW's pairs.txt (header: folds, pairs per fold) copied
    in, as the face task's test folder expects."""
    make_face_folders(folder, people, per_person, suffix=".jpg")
    pairs = pairs if pairs is not None else [f"{people[0]}\t1\t2", f"{people[0]}\t1\t{people[1]}\t3"]
    (folder / "pairs.txt").write_text("\n".join(["10\t300", *pairs]) + "\n")
    return folder
