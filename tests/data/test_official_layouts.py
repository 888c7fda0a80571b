"""The official releases a user points training at: MSMT17 lists, VeRi-776 lists + XML, LFW; layout choice."""

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.data.trees import (
    make_face_folders,
    make_lfw,
    make_market,
    make_msmt17,
    make_veri,
    make_veri_lists,
    veri_label_xml,
    write_image,
)
from ufo.data.readers_lists import read_msmt17, read_veri_labels, read_veri_lists
from ufo.data.types import DataError
from ufo.datasets import load_task_data, read_task_splits

# ---- MSMT17 ----------------------------------------------------------------------------------------------


def test_msmt17_train_is_train_plus_val_lists(tmp_path: Path):
    make_msmt17(tmp_path, train_ids=3, test_ids=2, cameras=3, per_camera=2)
    train = read_msmt17(tmp_path, "train")
    assert len(train) == 3 * 3 * 2 and {s.label for s in train} == {0, 1, 2}
    assert {s.camera for s in train} == {1, 2, 3}
    assert all(Path(s.path).is_file() and Path(s.path).parent.parent == tmp_path / "train" for s in train)
    first = train[0]
    assert Path(first.path).name == "0000_001_01_0303morning_0001_0.jpg" and (first.label, first.camera) == (0, 1)
    (tmp_path / "list_val.txt").unlink()  # optional: without it, train is list_train.txt alone
    assert len(read_msmt17(tmp_path, "train")) == 3 * 3 * 2 - 3


def test_msmt17_query_gallery_from_test_folder(tmp_path: Path):
    make_msmt17(tmp_path, train_ids=2, test_ids=2, cameras=3, per_camera=2)
    query, gallery = read_msmt17(tmp_path, "query"), read_msmt17(tmp_path, "gallery")
    assert len(query) == 2 * 2 and len(gallery) == 2 * (3 * 2 - 2)
    assert {s.label for s in query} == {s.label for s in gallery} == {0, 1}
    assert {s.camera for s in query} == {1, 2} and {s.camera for s in gallery} == {1, 2, 3}
    assert all(Path(s.path).parent.parent == tmp_path / "test" for s in query + gallery)


def test_msmt17_v2_folder_names(tmp_path: Path):
    make_msmt17(tmp_path, train_ids=2, test_ids=2, folders=("mask_train_v2", "mask_test_v2"))
    assert len(read_msmt17(tmp_path, "train")) == 2 * 3 * 2
    assert all("mask_test_v2" in s.path for s in read_msmt17(tmp_path, "gallery"))


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("break_it", "split", "needle"),
    [
        (lambda r: (r / "list_query.txt").unlink(), "query",
         r"list file .*list_query.txt does not exist \(the MSMT17 layout expects list_train.txt"),
        (lambda r: _edit_line(r / "list_train.txt", 2, "0000/a.jpg 0 extra"), "train",
         r"malformed MSMT17 list .*list_train.txt line 2: expected"),
        (lambda r: _edit_line(r / "list_gallery.txt", 3, "0000/0000_001_01_x_0001_0.jpg zero"), "gallery",
         r"list_gallery.txt line 3: expected .* got '0000/0000_001_01_x_0001_0.jpg zero'"),
        (lambda r: _edit_line(r / "list_val.txt", 1, "0000/0000_001_01_0303morning_9999_0.jpg 0"), "train",
         r"list_val.txt line 1: image .*0000_001_01_0303morning_9999_0.jpg does not exist"),
        (lambda r: _edit_line(r / "list_query.txt", 1, "0000/0000.jpg 0"), "query",
         r"malformed MSMT17 file name '0000/0000.jpg' in .*list_query.txt line 1"),
        (lambda r: shutil.rmtree(r / "test"), "gallery", r"MSMT17 test image folder missing .*mask_test_v2/"),
    ],
)
def test_msmt17_errors_name_file_and_line(tmp_path: Path, break_it, split: str, needle: str):
    make_msmt17(tmp_path, train_ids=2, test_ids=2)
    read_msmt17(tmp_path, split)  # intact first: the error below is the edit's
    break_it(tmp_path)
    with pytest.raises(DataError, match=needle):
        read_msmt17(tmp_path, split)


# ---- VeRi-776 lists + XML ------------------------------------------------------------------------------


def test_veri_xml_declared_gb2312_parses(tmp_path: Path):
    data = veri_label_xml(["0001_c001_00016450_0.jpg", "0776_c020_00000001_1.jpg"])
    with pytest.raises(ValueError, match="multi-byte encodings are not supported"):
        ET.fromstring(data)  # why the reader decodes first: expat refuses gb2312 bytes
    (tmp_path / "train_label.xml").write_bytes(data)
    labels = read_veri_labels(tmp_path / "train_label.xml")
    assert labels == {"0001_c001_00016450_0.jpg": (1, 1), "0776_c020_00000001_1.jpg": (776, 20)}
    plain = b'<TrainingImages><Items><Item imageName="a.jpg" vehicleID="0002" cameraID="c003"/></Items>' \
            b"</TrainingImages>"  # no declaration: UTF-8
    (tmp_path / "plain.xml").write_bytes(plain)
    assert read_veri_labels(tmp_path / "plain.xml") == {"a.jpg": (2, 3)}


def test_veri_lists_read_labels_from_xml(tmp_path: Path):
    make_veri_lists(tmp_path, train_ids=2, test_ids=2, cameras=2, per_camera=2)
    xml = tmp_path / "train_label.xml"
    first = (tmp_path / "name_train.txt").read_text().split()[0]
    text = xml.read_bytes().replace(f'imageName="{first}" vehicleID="0001"'.encode(),
                                    f'imageName="{first}" vehicleID="0042"'.encode())
    xml.write_bytes(text)  # the XML, not the file name, decides
    train = read_veri_lists(tmp_path, "train")
    assert (Path(train[0].path).name, train[0].label, train[0].camera) == (first, 42, 1)
    assert len(train) == 2 * 2 * 2 and {s.label for s in train[1:]} == {1, 2}
    query, gallery = read_veri_lists(tmp_path, "query"), read_veri_lists(tmp_path, "gallery")
    assert len(query) == 2 * 2 and len(gallery) == 2 * 2 * 2  # query images are test images too
    assert {Path(q.path).name for q in query} <= {Path(g.path).name for g in gallery}
    assert sorted((s.label, s.camera) for s in query) == [(100, 1), (100, 2), (101, 1), (101, 2)]


def test_veri_lists_without_xml_use_file_names(tmp_path: Path):
    make_veri_lists(tmp_path, xml=False, train_ids=2, test_ids=1, cameras=2, per_camera=1)
    write_image(tmp_path / "image_train" / "0009_c009_00000001_0.jpg")  # not listed: not read
    train = read_veri_lists(tmp_path, "train")
    assert sorted((s.label, s.camera) for s in train) == [(1, 1), (1, 2), (2, 1), (2, 2)]


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


@pytest.mark.parametrize(
    ("break_it", "split", "needle"),
    [
        (lambda r: (r / "image_test" / "0101_c002_00000016_0.jpg").unlink(), "gallery",
         r"name_test.txt line 8: image .*0101_c002_00000016_0.jpg does not exist"),
        (lambda r: _append(r / "name_train.txt", "0007_c001_00000099_0.jpg"), "train",
         r"name_train.txt and .*train_label.xml disagree: 1 names only in name_train.txt "
         r"\(e.g. \['0007_c001_00000099_0.jpg'\]\), 0 only in train_label.xml"),
        (lambda r: _append(r / "name_query.txt", "two names.jpg"), "query",
         r"malformed VeRi list .*name_query.txt line 5: expected one file name"),
        (lambda r: (r / "train_label.xml").write_bytes(b"<TrainingImages><Items><Item"), "train",
         r"malformed VeRi label file .*train_label.xml: .*line 1"),
        (lambda r: (r / "test_label.xml").write_bytes(
            b'<TestImages><Items><Item imageName="a.jpg" vehicleID="x1" cameraID="c001"/></Items></TestImages>'),
         "gallery", r"test_label.xml: <Item> 1 needs imageName, vehicleID"),
        (lambda r: (r / "name_query.txt").unlink(), "query",
         r"list file .*name_query.txt does not exist \(the VeRi-776 lists layout"),
    ],
)
def test_veri_lists_errors_name_the_file(tmp_path: Path, break_it, split: str, needle: str):
    make_veri_lists(tmp_path, train_ids=2, test_ids=2, cameras=2, per_camera=2)
    read_veri_lists(tmp_path, split)  # intact first: the error below is the edit's
    break_it(tmp_path)
    with pytest.raises(DataError, match=needle):
        read_veri_lists(tmp_path, split)


# ---- layout choice (read_task_splits / load_task_data) -----------------------------------------------


def test_person_task_reads_msmt17_release(tmp_path: Path):
    make_msmt17(tmp_path / "person", train_ids=10, test_ids=3)
    data = load_task_data("person", tmp_path, val_fraction=0.3, seed=1)
    assert data.num_classes == 7 and len({s.label for s in data.val.gallery}) == 3
    assert all("/person/train/" in s.path for s in data.train + data.val.query + data.val.gallery)
    assert all("/person/test/" in s.path for s in data.test.query + data.test.gallery)
    for q in data.val.query:
        assert any(g.label == q.label and g.camera != q.camera for g in data.val.gallery)


def test_vehicle_task_prefers_lists_over_folders(tmp_path: Path):
    folder = make_veri_lists(tmp_path / "vehicle", train_ids=4, test_ids=2, cameras=2, per_camera=2)
    write_image(folder / "image_train" / "0009_c009_00000001_0.jpg")  # in the folder, not in name_train.txt
    train, test = read_task_splits("vehicle", folder)
    assert 9 not in {s.label for s in train} and len(train) == 4 * 2 * 2
    assert len(test.gallery) == 2 * 2 * 2  # name_test.txt, query images included
    for name in ("name_train.txt", "name_query.txt", "name_test.txt"):
        (folder / name).unlink()
    train, _ = read_task_splits("vehicle", folder)  # no lists: the folder reader
    assert 9 in {s.label for s in train}


@pytest.mark.parametrize(
    ("task", "make", "needles"),
    [
        ("person", None, ["Market-1501 needs bounding_box_train/, query/, bounding_box_test/",
                          "MSMT17 needs list_train.txt, list_query.txt, list_gallery.txt, train/ or mask_train_v2/"]),
        ("vehicle", None, ["VeRi-776 lists needs name_train.txt", "VeRi-776 folders needs image_train/"]),
        ("person", lambda r: shutil.rmtree(make_market(r, train_ids=2, test_ids=1) / "query"),
         ["(missing: query/)", "MSMT17 needs"]),
        ("person", lambda r: (make_msmt17(r, train_ids=2, test_ids=1) / "list_gallery.txt").unlink(),
         ["(missing: list_gallery.txt)"]),
        ("vehicle", lambda r: shutil.rmtree(make_veri(r, train_ids=2, test_ids=1) / "image_test"),
         ["VeRi-776 folders needs image_train/, image_query/, image_test/ (missing: image_test/)"]),
    ],
)
def test_folder_matching_no_layout_lists_what_each_needs(tmp_path: Path, task: str, make, needles: list[str]):
    folder = tmp_path / task
    folder.mkdir()
    if make:
        make(folder)
    with pytest.raises(DataError, match=f"holds none of the {task} layouts") as error:
        load_task_data(task, tmp_path)
    for needle in needles:
        assert needle in str(error.value)


# ---- face: LFW as the test split ----------------------------------------------------------------------


def _lfw_task(tmp_path: Path, pairs: list[str] | None = None) -> Path:
    """`<root>/face/train` identity folders; `<root>/face/test` -> a separate `lfw/` folder, as docs say."""
    make_face_folders(tmp_path / "data" / "face" / "train", [f"p{i}" for i in range(5)], per_person=3)
    lfw = make_lfw(tmp_path / "lfw", ["Aaron_Peirsol", "Abel_Pacheco", "Zico"], per_person=4, pairs=pairs)
    (tmp_path / "data" / "face" / "test").symlink_to(lfw, target_is_directory=True)
    return tmp_path / "data"


def test_lfw_tree_read_for_evaluation(tmp_path: Path):
    pairs = ["Aaron_Peirsol\t1\t4", "Zico 2 3", "Abel_Pacheco\t2\tZico\t1"]
    data = load_task_data("face", _lfw_task(tmp_path, pairs), val_fraction=0.4, seed=0)
    names = [Path(s.path).name for s in data.test.query]
    assert data.test.query == data.test.gallery and len(names) == 3 * 4
    named = [(names[i], names[j], same) for i, j, same in data.test.pairs]
    assert named == [("Aaron_Peirsol_0001.jpg", "Aaron_Peirsol_0004.jpg", True),
                     ("Zico_0002.jpg", "Zico_0003.jpg", True),
                     ("Abel_Pacheco_0002.jpg", "Zico_0001.jpg", False)]
    assert data.num_classes == 3 and all("/train/" in s.path for s in data.train)


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("Zico\t1", r"pairs.txt line 3: expected 'name i j'"),
        ("Zico\t1\t5", r"pairs.txt line 3: image 5 of 'Zico' out of range 1..4"),
        ("Zico\t1\tNobody\t2", r"pairs.txt line 3: no identity folder 'Nobody'"),
    ],
)
def test_lfw_wrong_pairs_line_names_file_and_line(tmp_path: Path, line: str, needle: str):
    root = _lfw_task(tmp_path, ["Zico\t1\t2", line])
    with pytest.raises(DataError, match=needle):
        load_task_data("face", root)


def test_lfw_pairs_follow_the_numbers_in_the_names_not_the_positions(tmp_path: Path):
    """One image missing from an LFW folder must not shift the pairs after it onto other files."""
    root = _lfw_task(tmp_path, ["Zico\t1\t4", "Zico\t2\t3"])
    (tmp_path / "lfw" / "Zico" / "Zico_0003.jpg").unlink()
    with pytest.raises(DataError, match=r"line 3: image Zico_0003 is missing from .*Zico"):
        load_task_data("face", root)
    (tmp_path / "lfw" / "pairs.txt").write_text("10\t300\nZico\t1\t4\n")
    data = load_task_data("face", root)
    names = [Path(s.path).name for s in data.test.query]
    i, j, same = data.test.pairs[0]
    assert (names[i], names[j], same) == ("Zico_0001.jpg", "Zico_0004.jpg", True)  # position 3 now, not 4
