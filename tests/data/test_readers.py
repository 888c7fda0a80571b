from pathlib import Path

import pytest

from tests.data.trees import make_face_folders, make_market, make_sop, make_veri, market_name, write_image
from ufo.data.readers import (
    natural_key,
    read_class_folders,
    read_face_folders,
    read_face_pairs,
    read_market,
    read_sop,
    read_veri,
)
from ufo.data.types import DataError


def test_market_parses_identity_and_camera(tmp_path: Path):
    write_image(tmp_path / "bounding_box_train" / "0002_c1s1_000451_03.jpg")
    write_image(tmp_path / "bounding_box_train" / "0002_c5s3_065187_02.jpg")
    write_image(tmp_path / "bounding_box_train" / "1501_c6s4_001877_01.jpg")
    (tmp_path / "bounding_box_train" / "Thumbs.db").write_bytes(b"not an image")  # Market ships these
    samples = read_market(tmp_path, "train")
    assert [(Path(s.path).name[:4], s.label, s.camera) for s in samples] == [
        ("0002", 2, 1), ("0002", 2, 5), ("1501", 1501, 6)
    ]


def test_market_gallery_drops_junk_keeps_distractors(tmp_path: Path):
    for name in ("-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg", "0001_c2s1_000301_01.jpg"):
        write_image(tmp_path / "bounding_box_test" / name)
    samples = read_market(tmp_path, "gallery")
    assert sorted((s.label, s.camera) for s in samples) == [(0, 1), (1, 2)]


def test_market_splits_and_msmt_style_names(tmp_path: Path):
    make_market(tmp_path, train_ids=3, test_ids=2, cameras=3, per_camera=2)
    write_image(tmp_path / "bounding_box_train" / "0000_c14_0030.jpg")  # MSMT17: id 0 is a real person
    train = read_market(tmp_path, "train")
    assert {s.label for s in train} == {0, 1, 2, 3} and len(train) == 3 * 3 * 2 + 1
    assert {s.camera for s in train} == {1, 2, 3, 14}
    query, gallery = read_market(tmp_path, "query"), read_market(tmp_path, "gallery")
    assert {s.label for s in query} == {s.label for s in gallery} == {100, 101}


def test_veri_parses_identity_and_camera(tmp_path: Path):
    make_veri(tmp_path, train_ids=2, test_ids=1, cameras=2, per_camera=1)
    write_image(tmp_path / "image_train" / "0776_c020_00016450_1.jpg")
    train = read_veri(tmp_path, "train")
    assert sorted({(s.label, s.camera) for s in train}) == [(1, 1), (1, 2), (2, 1), (2, 2), (776, 20)]
    assert len(read_veri(tmp_path, "query")) == 2


def test_sop_reads_list_with_header(tmp_path: Path):
    make_sop(tmp_path, train_classes=2, test_classes=1, per_class=2)
    train, test = read_sop(tmp_path, "train"), read_sop(tmp_path, "test")
    assert [s.label for s in train] == [1, 1, 2, 2] and [s.label for s in test] == [3, 3]
    assert all(Path(s.path).is_file() and s.camera == -1 for s in train + test)


def test_class_folders_natural_order(tmp_path: Path):
    for person in ("s10", "s2", "s1"):
        for i in (10, 2, 1):
            write_image(tmp_path / person / f"{i}.pgm")
    samples = read_class_folders(tmp_path)
    names = [(Path(s.path).parent.name, Path(s.path).name, s.label) for s in samples]
    assert names[:4] == [("s1", "1.pgm", 0), ("s1", "2.pgm", 0), ("s1", "10.pgm", 0), ("s2", "1.pgm", 1)]
    assert samples[-1].label == 2 and natural_key("a2") < natural_key("a10")


def test_face_pairs_index_into_folders(tmp_path: Path):
    make_face_folders(tmp_path, ["Ann", "Bob"], per_person=3)
    (tmp_path / "pairs.txt").write_text("1\t2\nAnn\t1\t3\nAnn 2 Bob 3\n")
    samples = read_face_folders(tmp_path)
    pairs = read_face_pairs(tmp_path / "pairs.txt", tmp_path)
    assert pairs == [(0, 2, True), (1, 5, False)]
    assert Path(samples[5].path).name == "Bob_0003.png"


@pytest.mark.parametrize(
    ("setup", "reader", "needle"),
    [
        (lambda r: None, lambda r: read_market(r, "train"), "bounding_box_train"),
        (lambda r: (r / "bounding_box_train").mkdir(), lambda r: read_market(r, "train"), "empty Market folder"),
        (lambda r: write_image(r / "image_train" / "car_one.jpg"), lambda r: read_veri(r, "train"), "car_one.jpg"),
        (lambda r: (r / "query").mkdir() or (r / "query" / market_name(1, 1, 1)).write_bytes(b""),
         lambda r: read_market(r, "query"), "0001_c1s1_000001_01.jpg"),
        (lambda r: None, lambda r: read_sop(r, "train"), "Ebay_train.txt"),
    ],
)
def test_reader_errors_name_the_problem(tmp_path: Path, setup, reader, needle):
    setup(tmp_path)
    with pytest.raises(DataError, match=needle):
        reader(tmp_path)


def test_sop_malformed_line_and_missing_image(tmp_path: Path):
    make_sop(tmp_path, train_classes=1, test_classes=1, per_class=1)
    text = (tmp_path / "Ebay_train.txt").read_text()
    (tmp_path / "Ebay_train.txt").write_text(text + "7 x 1 cat0_final/a.JPG\n")
    with pytest.raises(DataError, match=r"Ebay_train.txt line 3"):
        read_sop(tmp_path, "train")
    (tmp_path / "Ebay_train.txt").write_text(text + "7 9 1 cat0_final/missing.JPG\n")
    with pytest.raises(DataError, match=r"missing.JPG does not exist"):
        read_sop(tmp_path, "train")
    (tmp_path / "Ebay_test.txt").write_text("id class super path\n")
    with pytest.raises(DataError, match=r"Ebay_test.txt line 1: expected header"):
        read_sop(tmp_path, "test")


def test_empty_identity_folder(tmp_path: Path):
    make_face_folders(tmp_path, ["Ann"], per_person=2)
    (tmp_path / "Bob").mkdir()
    with pytest.raises(DataError, match=r"empty identity folder .*Bob"):
        read_face_folders(tmp_path)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("Ann\t1", "line 2: expected 'name i j'"),
        ("Ann\tone\ttwo", "line 2: expected"),
        ("Ann\t1\t9", "image 9 of 'Ann' out of range 1..3"),
        ("Cid\t1\tAnn\t2", "no identity folder 'Cid'"),
    ],
)
def test_malformed_pairs_lines(tmp_path: Path, line: str, needle: str):
    make_face_folders(tmp_path, ["Ann", "Bob"], per_person=3)
    (tmp_path / "pairs.txt").write_text(f"Ann\t1\t2\n{line}\n")
    with pytest.raises(DataError, match=needle) as error:
        read_face_pairs(tmp_path / "pairs.txt", tmp_path)
    assert "pairs.txt" in str(error.value)
