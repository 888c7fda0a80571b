"""API keys: salted hashes, scopes, 401/403, keys never logged, `ufo keys create`, public binds need keys."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.api.auth import KeyRecordError, KeyRing, create_key, parse_record, read_records

from .conftest import ROOT, app_settings, running_app

DIM = 128


def test_records_are_salted_hashes_that_round_trip() -> None:
    key, record = create_key(["read", "write"])
    assert key.startswith(f"ufo_{record.key_id}_") and key not in record.render()
    parsed = parse_record(record.render())
    assert parsed == record and parsed.matches(key) and not parsed.matches(key + "x")
    _, other = create_key(["read"])
    assert other.salt != record.salt  # same scheme, different salt
    assert parsed.allows("read") and parsed.allows("write") and not parsed.allows("admin")
    assert parse_record(create_key(["admin"])[1].render()).allows("write")  # admin may do everything


@pytest.mark.parametrize(("text", "needle"), [
    ("ufo_12345678_secret", "is this a key instead of its record"), ("id:read:zz:00", "hex"),
    ("id:read:00:00", "32-byte"), (f"id:delete:00:{'0' * 64}", "scopes"), (f"id::00:{'0' * 64}", "scopes"),
])
def test_bad_records_are_refused_with_a_reason(text: str, needle: str) -> None:
    with pytest.raises(KeyRecordError, match=needle):
        parse_record(text)


def test_records_file_with_comments(tmp_path: Path) -> None:
    _, a = create_key(["read"])
    _, b = create_key(["admin"])
    path = tmp_path / "keys"
    path.write_text(f"# gateway keys\n{a.render()}\n\n{b.render()}\n")
    assert read_records([], path) == [a, b]
    ring = KeyRing([a], enforced=True)
    assert ring.authenticate("ufo_00000000_nope") is None and ring.authenticate("") is None


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[str, str]]:
    """scope name → (key, record)."""
    made = {name: create_key(scopes) for name, scopes in
            {"read": ["read"], "write": ["write"], "admin": ["admin"]}.items()}
    return {name: (key, record.render()) for name, (key, record) in made.items()}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.anyio
async def test_scopes_401_403(api_repo: Path, tmp_path: Path, keys: dict[str, tuple[str, str]],
                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = app_settings(api_repo, tmp_path, api_keys=[record for _, record in keys.values()])
    read, write, admin = (keys[s][0] for s in ("read", "write", "admin"))
    item = {"id": "a", "embedding": [1.0] + [0.0] * (DIM - 1)}
    query = {"embedding": item["embedding"], "k": 1}
    async with running_app(settings) as client:
        for response in (await client.post("/v1/tasks/face/search", json=query),
                         await client.get("/v1/tasks"),
                         await client.post("/v1/tasks/face/search", json=query, headers=bearer("ufo_deadbeef_x")),
                         await client.post("/v1/tasks/face/search", json=query, headers={"Authorization": "Basic x"})):
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == "application/problem+json"
        assert (await client.post("/v1/tasks/face/search", json=query, headers=bearer(read))).status_code == 200
        assert (await client.post("/v1/tasks/face/search", json=query, headers={"X-API-Key": read})).status_code == 200
        refused = await client.post("/v1/tasks/face/items", json=item, headers=bearer(read))
        assert refused.status_code == 403 and "'write' scope" in refused.json()["detail"]
        assert (await client.post("/v1/tasks/face/items", json=item, headers=bearer(write))).status_code == 200
        assert (await client.post("/v1/tasks/face/search", json=query, headers=bearer(write))).status_code == 403
        assert (await client.post("/v1/tasks/face/index/rebuild", headers=bearer(write))).status_code == 403
        rebuilt = await client.post("/v1/tasks/face/index/rebuild", headers=bearer(admin))
        assert rebuilt.status_code == 200 and rebuilt.json()["count"] == 1
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path
        # An unauthenticated client learns nothing about the body: 401 comes before parsing it.
        junk = await client.post("/v1/tasks/face/embed", content=b"{", headers={"content-type": "application/json"})
        assert junk.status_code == 401
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert all(key not in logged for key, _ in keys.values())


@pytest.mark.anyio
async def test_keys_enforced_on_loopback_once_configured(api_repo: Path, tmp_path: Path) -> None:
    key, record = create_key(["read"])
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(record.render() + "\n")
    async with running_app(app_settings(api_repo, tmp_path, api_keys_file=keys_file)) as client:
        assert (await client.get("/v1/tasks")).status_code == 401
        assert (await client.get("/v1/tasks", headers=bearer(key))).status_code == 200


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UFO_")}
    return subprocess.run([sys.executable, "-m", "ufo_cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT), **env})


def test_keys_create_cli() -> None:
    result = run_cli("keys", "create", "--scopes", "read,write")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    record = parse_record(lines["record"])
    assert record.matches(lines["key"]) and record.scopes == {"read", "write"}
    assert "cannot be shown again" in result.stderr
    bad = run_cli("keys", "create", "--scopes", "read,root")
    assert bad.returncode == 2 and "scopes must be" in bad.stderr


def test_public_bind_without_keys_is_refused(tmp_path: Path) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "1", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "requires API keys" in result.stderr and "Traceback" not in result.stderr
    refused = run_cli("serve", "--host", "0.0.0.0", UFO_API_KEYS='["not-a-record"]', UFO_REPOSITORY=str(tmp_path))
    assert refused.returncode == 2 and "is this a key instead of its record" in refused.stderr


@pytest.mark.anyio
async def test_bad_key_record_stops_startup_with_a_reason(api_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyRecordError, match="hex"):
        async with running_app(app_settings(api_repo, tmp_path, api_keys=["x:read:zz:00"])):
            pass


def test_missing_repository_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("serve", "--repository", str(tmp_path / "nowhere"), "--port", "1")
    assert result.returncode == 2 and "is not a folder" in result.stderr and "Traceback" not in result.stderr
