from pathlib import Path

import pytest

from tests.data.trees import make_face_task, make_market, make_sop, make_veri
from ufo.data.splits import make_face_pairs, split_query_gallery
from ufo.data.types import DataError, Sample
from ufo.datasets import load_task_data

MAKERS = {"person": make_market, "vehicle": make_veri, "product": make_sop, "face": make_face_task}


def _build(tmp_path: Path, task: str) -> Path:
    kwargs = {"person": {"train_ids": 10}, "vehicle": {"train_ids": 10}, "product": {"train_classes": 10},
              "face": {"train_people": 10}}[task]
    MAKERS[task](tmp_path / task, **kwargs)
    return tmp_path


@pytest.mark.parametrize("task", ["face", "person", "vehicle", "product"])
def test_splits_are_disjoint_and_remapped(tmp_path: Path, task: str):
    data = load_task_data(task, _build(tmp_path, task), val_fraction=0.3, seed=1)
    train_paths = {s.path for s in data.train}
    val_paths = {s.path for s in data.val.query + data.val.gallery}
    test_paths = {s.path for s in data.test.query + data.test.gallery}
    assert not train_paths & val_paths and not train_paths & test_paths and not val_paths & test_paths
    assert sorted({s.label for s in data.train}) == list(range(data.num_classes)) and data.num_classes == 7
    assert len({s.label for s in data.val.gallery}) == 3
    train_dirs = {Path(s.path).parent for s in data.train}
    if task == "face":  # identities are folders: no val/test folder is a train folder
        assert not train_dirs & {Path(p).parent for p in val_paths | test_paths}
        assert data.val.pairs and sum(same for *_, same in data.val.pairs) * 2 == len(data.val.pairs)
        assert len(data.test.pairs) == 4
    if task in ("person", "vehicle"):
        for q in data.val.query:  # every val query has a valid match
            assert any(g.label == q.label and g.camera != q.camera for g in data.val.gallery)
    if task == "product":
        assert data.val.query == data.val.gallery


def test_val_split_is_deterministic_by_seed(tmp_path: Path):
    root = _build(tmp_path, "person")
    a, b = load_task_data("person", root, seed=3), load_task_data("person", root, seed=3)
    assert a == b
    labels = [{s.label for s in load_task_data("person", root, seed=s).val.gallery} for s in range(6)]
    assert len({frozenset(x) for x in labels}) > 1


def test_missing_task_folder(tmp_path: Path):
    with pytest.raises(DataError, match="vehicle"):
        load_task_data("vehicle", tmp_path)


def test_query_gallery_split_keeps_queries_answerable():
    import numpy as np

    rng = np.random.default_rng(0)
    one_each = [Sample("a", 1, 1), Sample("b", 1, 2)]  # two cameras, one image each: only one query fits
    queries, gallery = split_query_gallery(one_each, rng)
    assert len(queries) == 1 and len(gallery) == 1 and queries[0].camera != gallery[0].camera
    single_camera = [Sample("c", 2, 3), Sample("d", 2, 3)]
    assert split_query_gallery(single_camera, rng) == ([], single_camera)
    pairs = make_face_pairs([Sample(str(i), i // 4) for i in range(8)] + [Sample("x", 9)], rng, max_pairs=5)
    assert sum(s for *_, s in pairs) == 5 and len(pairs) == 10
