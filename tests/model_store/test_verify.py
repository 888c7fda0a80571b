"""`ufo store verify`: passes on a good repository, and names the file for each kind of damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_store.verify import verify_repository
from ufo_cli.main import main

from .conftest import export_tiny


def _only_problem(repo: Path):
    problems = verify_repository(repo)
    assert len(problems) >= 1, "damage went unnoticed"
    return problems


def test_good_repository_passes_and_cli_prints_ok(repo: Path, capsys: pytest.CaptureFixture) -> None:
    export_tiny(repo, seed=1)
    assert verify_repository(repo) == []
    assert main(["store", "verify", "--repository", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "OK tiny/1" in out and "OK tiny/2" in out


def test_truncated_model_onnx(repo: Path, capsys: pytest.CaptureFixture) -> None:
    onnx_path = repo / "tiny" / "1" / "model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[: onnx_path.stat().st_size // 2])
    problems = _only_problem(repo)
    assert {p.path for p in problems} == {onnx_path}
    assert any("sha256" in p.message for p in problems)
    assert main(["store", "verify", "--repository", str(repo)]) == 1
    assert f"FAIL {onnx_path}: sha256" in capsys.readouterr().out


def test_config_disagreeing_with_the_graph(repo: Path) -> None:
    config_path = repo / "tiny" / "config.pbtxt"
    config_path.write_text(config_path.read_text().replace("dims: 16", "dims: 17"))
    problems = _only_problem(repo)
    assert [p.path for p in problems] == [config_path]
    assert "output 'embedding' dims [17] != graph [16]" in problems[0].message


def test_config_that_does_not_parse(repo: Path) -> None:
    config_path = repo / "tiny" / "config.pbtxt"
    config_path.write_text(config_path.read_text().replace("max_batch_size: 32", "max_batch_size: lots"))
    problems = _only_problem(repo)
    assert problems[0].path == config_path and "not a valid Triton model config" in problems[0].message


def test_missing_manifest(repo: Path) -> None:
    manifest_path = repo / "tiny" / "1" / "manifest.json"
    manifest_path.unlink()
    problems = _only_problem(repo)
    assert [(p.path, p.message) for p in problems] == [(manifest_path, "missing")]


def test_tampered_parity_file(repo: Path) -> None:
    parity_path = repo / "tiny" / "1" / "parity_embeddings.npy"
    expected = np.load(parity_path)
    np.save(parity_path, expected[::-1].copy())  # rows swapped: each golden input gets another's embedding
    problems = _only_problem(repo)
    assert [p.path for p in problems] == [parity_path]
    assert "parity mismatch" in problems[0].message


def test_missing_repository_and_model_without_versions(tmp_path: Path) -> None:
    assert "does not exist" in verify_repository(tmp_path / "nowhere")[0].message
    export_tiny(tmp_path)
    (tmp_path / "empty").mkdir()
    problems = verify_repository(tmp_path)
    assert {p.path.name for p in problems} == {"config.pbtxt", "empty"}
