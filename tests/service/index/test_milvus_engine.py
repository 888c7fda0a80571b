"""Milvus engine specifics: settings that fail start-up with one line naming the setting, filter expressions
that no value can change, and an unreachable Milvus becoming IndexUnavailable (→ 503 + Retry-After)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.api.errors import to_problem
from service.config import Settings
from service.index.engine import open_catalog
from service.index.errors import IndexUnavailable
from service.index.milvus_filter import filter_expression, string_literal
from service.index.milvus_settings import MilvusSettings, check_uri


@pytest.mark.parametrize("uri", ["http://milvus:19530", "https://a.example.com", "tcp://10.0.0.1:19530",
                                 "unix:/run/milvus.sock", "var/ufo/milvus.db", "/tmp/x/gallery.db"])
def test_good_uris_pass(uri: str) -> None:
    assert check_uri(uri) == uri


@pytest.mark.parametrize("uri", ["", "milvus:19530", "ftp://host:1", "http://:19530", "http://host:port",
                                 "var/ufo/milvus", ".db", "file:///x.db"])
def test_malformed_uri_fails_naming_the_setting(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UFO_MILVUS__URI", uri)
    with pytest.raises(ValidationError, match="UFO_MILVUS__URI"):
        Settings()


def test_unknown_engine_fails_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UFO_INDEX__ENGINE", "elastic")
    with pytest.raises(ValidationError, match=r"UFO_INDEX__ENGINE='elastic' is not an index engine"):
        Settings()
    with pytest.raises(ValueError, match="UFO_INDEX__ENGINE"):
        open_catalog("elastic", data_dir="x")


def test_engine_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UFO_INDEX__ENGINE", "milvus")
    monkeypatch.setenv("UFO_MILVUS__URI", str(tmp_path / "m.db"))
    settings = Settings()
    assert (settings.index.engine, settings.milvus.uri) == ("milvus", str(tmp_path / "m.db"))
    monkeypatch.delenv("UFO_INDEX__ENGINE")
    assert Settings().index.engine == "faiss"  # the default


@pytest.mark.parametrize("text", ['x" or id != "', "a\\", '\\"', "tab\tnew\nline\r", "ünï 名"])
def test_string_literals_round_trip(text: str) -> None:
    literal = string_literal(text)
    assert json.loads(literal) == text  # the escapes Milvus reads are JSON's subset here
    assert closing_quote(literal) == len(literal) - 1  # the value cannot end the literal early


def closing_quote(literal: str) -> int:
    """Where a C-style string literal (Milvus's) ends: the first quote after its opening one not escaped."""
    i = 1
    while literal[i] != '"':
        i += 2 if literal[i] == "\\" else 1
    return i


def test_filter_expression_shapes_and_refusals() -> None:
    assert filter_expression(None) == "" and filter_expression({}) == ""
    assert filter_expression({"a": 1, "b": True, "c": 1.5, "d": "s"}) == (
        'metadata["a"] == 1 and metadata["b"] == true and metadata["c"] == 1.5 and metadata["d"] == "s"')
    for bad in ({"a": None}, {"a": [1]}, {"a": {"b": 1}}, {"a": float("nan")}, {"a": "\x00"}, {"": 1}):
        with pytest.raises(ValueError):
            filter_expression(bad)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_milvus_down_at_start_is_index_unavailable() -> None:
    settings = MilvusSettings(uri=f"http://127.0.0.1:{free_port()}", timeout_s=2, retry_after_s=3)
    with pytest.raises(IndexUnavailable, match="unavailable") as caught:
        open_catalog("milvus", milvus=settings)
    response = to_problem(caught.value, "/v1/tasks/face/search")
    assert response.status_code == 503 and response.headers["Retry-After"] == "3"
    assert json.loads(response.body)["type"] == "urn:ufo:problem:unavailable"


def test_milvus_going_away_is_index_unavailable(tmp_path: Path) -> None:
    from milvus_lite.server_manager import server_manager_instance

    uri = str(tmp_path / "m.db")
    catalog = open_catalog("milvus", milvus=MilvusSettings(uri=uri, timeout_s=2))
    index = catalog.create("face", "ufo_face/1", 4)
    index.upsert("a", np.ones(4, np.float32), model_version="ufo_face/1")
    assert index.search(np.ones(4, np.float32), k=1).hits[0][0].id == "a"
    server_manager_instance.release_server(uri)  # the embedded server stops: as a Milvus outage
    with pytest.raises(IndexUnavailable):
        index.search(np.ones(4, np.float32), k=1)
    with pytest.raises(IndexUnavailable):
        index.upsert("b", np.ones(4, np.float32), model_version="ufo_face/1")
