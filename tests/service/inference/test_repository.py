"""The repository loader: highest usable version per task, broken versions skipped, clear errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from model_store.manifest import read_manifest, write_manifest
from service.inference.errors import RepositoryError
from service.inference.repository import load_repository


def copy_model(src_repo: Path, dst_repo: Path, name: str) -> Path:
    shutil.copytree(src_repo / name, dst_repo / name)
    return dst_repo / name


def add_version(model_dir: Path, version: int) -> Path:
    """Version `version` as a copy of version 1, manifest renumbered (same model bytes)."""
    target = model_dir / str(version)
    shutil.copytree(model_dir / "1", target)
    manifest = read_manifest(target / "manifest.json")
    write_manifest(manifest.model_copy(update={"version": version}), target / "manifest.json")
    return target


def corrupt(version_dir: Path) -> None:
    onnx = version_dir / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:200])


def test_picks_every_task_at_its_highest_version(repo: Path, tmp_path: Path) -> None:
    face = copy_model(repo, tmp_path, "face_tiny")
    copy_model(repo, tmp_path, "person_tiny")
    add_version(face, 2)
    (face / ".staging-abc").mkdir()  # an export in progress is not a version
    entries = load_repository(tmp_path)
    assert sorted(entries) == ["face", "person"]
    assert (entries["face"].version, entries["person"].version) == (2, 1)
    assert entries["face"].onnx_path == face / "2" / "model.onnx"
    assert entries["face"].manifest.task == "face"
    assert list(load_repository(tmp_path, tasks=["person"])) == ["person"]


def test_skips_a_broken_version_and_logs_it(repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    face = copy_model(repo, tmp_path, "face_tiny")
    corrupt(add_version(face, 2))
    bad_manifest = add_version(face, 3)
    (bad_manifest / "manifest.json").write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        entries = load_repository(tmp_path)
    assert entries["face"].version == 1
    assert "face_tiny/2: model.onnx sha256 does not match" in caplog.text
    assert "face_tiny/3: invalid manifest.json" in caplog.text


def test_no_usable_version_is_a_clear_error(repo: Path, tmp_path: Path) -> None:
    face = copy_model(repo, tmp_path, "face_tiny")
    copy_model(repo, tmp_path, "person_tiny")
    corrupt(face / "1")
    with pytest.raises(RepositoryError, match=r"task 'face': no usable model version .*face_tiny/1: model.onnx sha256"):
        load_repository(tmp_path)
    assert list(load_repository(tmp_path, tasks=["person"])) == ["person"]  # the healthy task still loads
    with pytest.raises(RepositoryError, match="task 'vehicle': no usable model version"):
        load_repository(tmp_path, tasks=["person", "vehicle"])


def test_repository_level_errors(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="is not a folder"):
        load_repository(tmp_path / "missing")
    with pytest.raises(RepositoryError, match="holds no usable model"):
        load_repository(tmp_path)
    with pytest.raises(RepositoryError, match="task 'faces': no usable model version"):
        load_repository(repo, tasks=["faces"])
    with pytest.raises(RepositoryError, match="invalid task name"):
        load_repository(repo, tasks=["../face"])


def test_two_models_for_one_task_need_a_choice(repo: Path, tmp_path: Path) -> None:
    copy_model(repo, tmp_path, "face_tiny")
    other = tmp_path / "face_other"
    shutil.copytree(repo / "face_tiny", other)
    manifest = read_manifest(other / "1" / "manifest.json")
    write_manifest(manifest.model_copy(update={"model_name": "face_other"}), other / "1" / "manifest.json")
    with pytest.raises(RepositoryError, match="several models serve it"):
        load_repository(tmp_path)
    chosen = load_repository(tmp_path, model_names={"face": "face_other"})
    assert chosen["face"].model_dir == other
