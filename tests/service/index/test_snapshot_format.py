"""Snapshot format /2 (labels as UTF-8 arrays): odd ids and metadata survive, format /1 still loads,
inconsistent label arrays and unknown formats are refused."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.index import SnapshotError, VectorIndex
from service.index.snapshot import (
    FORMAT,
    decode_texts,
    encode_texts,
    load_snapshot,
    save_snapshot,
    sha256_file,
    sidecar_path,
)
from tests.service.index.data import clustered

V = "v7"
ODD_IDS = ["plain", "é-accent", "日本語", "emoji-🙂", "nul\x00inside", "lone-\ud800-surrogate", "x" * 512]


def odd_index() -> VectorIndex:
    """Odd ids and metadata in main and delta, with an overwrite and a delete (dead labels)."""
    n = 300
    ids = ODD_IDS + [f"item-{i}" for i in range(n - len(ODD_IDS))]
    xb = clustered(n + 5, 16, seed=3)
    meta: list[dict[str, Any]] = [{"cam": i % 4, "tags": ["a", "ü"], "nested": {"k": None}} if i % 3 else {}
                                  for i in range(n)]
    index = VectorIndex.build(ids, xb[:n], meta, model_version=V, factory="Flat", offset=10)
    index.upsert(["delta-日本", "plain"], xb[n : n + 2], [{"new": "ß"}, {}], model_version=V, offset=11)
    index.delete(["item-7", "emoji-🙂"], offset=12)
    return index


def rewrite(path: Path, change: Any) -> None:
    """Let `change(entries, sidecar)` edit a snapshot's zip entries and sidecar, then re-checksum it
    (a valid file written by other code, not a corrupted one)."""
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    sidecar = json.loads(sidecar_path(path).read_text())
    change(entries, sidecar)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    sidecar["checksum"]["value"], sidecar["bytes"] = sha256_file(path), path.stat().st_size
    sidecar_path(path).write_text(json.dumps(sidecar))


def npy(data: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)


def assert_same_index(a: VectorIndex, b: VectorIndex) -> None:
    assert (len(a), a.main_size, a.delta_size, a.tombstones, a.offset) == (len(b), b.main_size, b.delta_size,
                                                                            b.tombstones, b.offset)
    for item_id in [*ODD_IDS, "delta-日本", "item-7", "item-8", "item-299"]:
        assert (item_id in a) == (item_id in b) and a.metadata_of(item_id) == b.metadata_of(item_id), item_id
    xq = clustered(20, 16, seed=9)
    for kwargs in ({}, {"filter": {"cam": 1}}):
        assert a.search(xq, 10, **kwargs).hits == b.search(xq, 10, **kwargs).hits


def test_texts_round_trip_through_arrays() -> None:
    texts = ["", *ODD_IDS, "", "z"]
    blob, ends = encode_texts(texts)
    assert blob.dtype == np.uint8 and ends.dtype == np.int64 and len(ends) == len(texts)
    assert decode_texts(blob, ends) == texts
    assert decode_texts(*encode_texts([])) == []


def test_odd_ids_and_metadata_survive_a_round_trip(tmp_path: Path) -> None:
    index = odd_index()
    sidecar = save_snapshot(index, tmp_path / "snap")
    assert sidecar["format"] == FORMAT == "ufo-index-snapshot/2"
    with zipfile.ZipFile(tmp_path / "snap") as zf:
        assert "labels.json" not in zf.namelist()
        ids = decode_texts(npy(zf.read("ids_utf8.npy")), npy(zf.read("ids_ends.npy")))
    assert ids[ODD_IDS.index("emoji-🙂")] == ""  # dead labels are not kept
    loaded = load_snapshot(tmp_path / "snap", model_version=V)
    assert loaded.metadata_of("delta-日本") == {"new": "ß"} and "emoji-🙂" not in loaded
    assert_same_index(index, loaded)


def to_format_1(index: VectorIndex) -> Any:
    """A `rewrite` change that turns a /2 snapshot of `index` into what format /1 wrote."""
    view = index.view
    alive = view.alive[: view.n_labels].tolist()

    def change(entries: dict[str, bytes], sidecar: dict[str, Any]) -> None:
        for name in ("ids_utf8.npy", "ids_ends.npy", "metadata_utf8.npy", "metadata_ends.npy"):
            del entries[name]
        entries["labels.json"] = json.dumps({
            "ids": [i if ok else None for i, ok in zip(view.ids, alive, strict=True)],
            "metadata": [m if ok else None for m, ok in zip(view.metadata, alive, strict=True)]}).encode()
        header = json.loads(entries["header.json"])
        entries["header.json"] = json.dumps(header | {"format": "ufo-index-snapshot/1"}).encode()
        sidecar["format"] = "ufo-index-snapshot/1"

    return change


def test_a_format_1_snapshot_still_loads(tmp_path: Path) -> None:
    index = odd_index()
    save_snapshot(index, tmp_path / "snap")
    rewrite(tmp_path / "snap", to_format_1(index))
    assert_same_index(index, load_snapshot(tmp_path / "snap", model_version=V))


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    save_snapshot(odd_index(), tmp_path / "snap")
    rewrite(tmp_path / "snap", lambda entries, sidecar: sidecar.update(format="ufo-index-snapshot/9"))
    with pytest.raises(SnapshotError, match="unknown format 'ufo-index-snapshot/9'"):
        load_snapshot(tmp_path / "snap")


def test_label_arrays_that_do_not_add_up_are_refused(tmp_path: Path) -> None:
    save_snapshot(odd_index(), tmp_path / "snap")

    def shorten(entries: dict[str, bytes], sidecar: dict[str, Any]) -> None:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, npy(entries["ids_ends.npy"]) - 1)  # every end one short
        entries["ids_ends.npy"] = buf.getvalue()

    rewrite(tmp_path / "snap", shorten)
    with pytest.raises(SnapshotError, match="label offsets"):
        load_snapshot(tmp_path / "snap")
