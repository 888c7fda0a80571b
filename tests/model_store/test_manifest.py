"""The manifest schema: the checked-in JSON Schema is in sync, and exported manifests validate against it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from model_store.manifest import SCHEMA_PATH, Manifest, read_manifest, render_json_schema


def test_schema_file_is_in_sync_with_the_model() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_json_schema(), (
        "model_store/manifest.schema.json is stale: run `python -m model_store.manifest`"
    )


def test_exported_manifest_validates_against_the_schema_file(repo: Path) -> None:
    data = json.loads((repo / "tiny" / "1" / "manifest.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    manifest = read_manifest(repo / "tiny" / "1" / "manifest.json")
    assert manifest.schema_version == 1 and manifest.version == 1
    assert manifest.mean == (127.5,) * 3 and manifest.std == (127.5,) * 3
    assert manifest.interpolation == "bicubic" and manifest.embedding_dim == 16
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest


@pytest.mark.parametrize(
    "change",
    [{"task": "Cats!"}, {"task": "../face"}, {"onnx_sha256": "abc"}, {"unexpected": 1}, {"schema_version": 2},
     {"version": 0}],
)
def test_manifest_rejects_bad_fields(repo: Path, change: dict) -> None:
    data = json.loads((repo / "tiny" / "1" / "manifest.json").read_text())
    data.update(change)
    with pytest.raises(ValidationError):
        Manifest.model_validate(data)
