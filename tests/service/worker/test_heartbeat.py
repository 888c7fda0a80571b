"""The worker's liveness probe against a real `ufo worker` process over a real redis-server: the probe command
the manifests run (`docker/healthcheck.py file://<heartbeat>?max_age_s=N`) passes while the loop beats, fails
once the process is stopped (SIGSTOP: stuck, not dead), passes again when it resumes, and fails after a clean
exit (the file is removed: a stale file must not vouch for a stopped worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.service.worker.conftest import RedisServer

ROOT = Path(__file__).resolve().parents[3]
WAIT_S = 60.0  # bound on every wait (not a timing assertion)


def probe(heartbeat: Path, max_age_s: float = 2.0) -> subprocess.CompletedProcess[str]:
    url = f"file://{heartbeat}?max_age_s={max_age_s:g}"
    return subprocess.run([sys.executable, str(ROOT / "docker" / "healthcheck.py"), url], capture_output=True,
                          text=True, timeout=30)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.timeout(180)
def test_liveness_probe_follows_the_worker_loop(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    heartbeat = tmp_path / "worker.heartbeat"
    env = os.environ | {"PYTHONPATH": str(ROOT), "UFO_STORE_URL": redis.url, "UFO_DATA_DIR": str(tmp_path / "data"),
                        "UFO_WORKER__BLOCK_S": "0.2", "UFO_WORKER__HEARTBEAT_FILE": str(heartbeat)}
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "ufo_cli", "worker", "--faiss-threads", "1"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: probe(heartbeat).returncode == 0, "the first heartbeat")
        worker.send_signal(signal.SIGSTOP)  # stuck: the process is there, its loop makes no progress
        wait_for(lambda: probe(heartbeat).returncode == 1, "the probe to fail on a stalled heartbeat")
        stale = probe(heartbeat)
        assert stale.returncode == 1 and "stale" in stale.stderr, stale.stderr
        worker.send_signal(signal.SIGCONT)
        wait_for(lambda: probe(heartbeat).returncode == 0, "the probe to pass once the loop beats again")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, (tmp_path / "worker.log").read_text()
        assert not heartbeat.exists() and probe(heartbeat).returncode == 1
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGCONT)
            worker.kill()
            worker.wait()
        log.close()
        redis.kill()


def test_probe_refuses_a_missing_file_and_accepts_a_fresh_one(tmp_path: Path) -> None:
    heartbeat = tmp_path / "beat"
    assert probe(heartbeat).returncode == 1
    heartbeat.write_text("now")
    assert probe(heartbeat, max_age_s=60).returncode == 0
    old = time.time() - 120
    os.utime(heartbeat, (old, old))
    assert probe(heartbeat, max_age_s=60).returncode == 1
