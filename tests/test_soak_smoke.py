"""bench/soak.py checks itself: a 20-second run against a real `ufo serve` on the demo models ends with 0 errors,
RSS sampled every second and a report written; its bookkeeping (the mix, the report's figures) is right. The
10-minute soak itself is a bench run (docs/benchmarks.md), never part of the tests."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import soak  # noqa: E402

DEMO = ROOT / "demo" / "models"


@pytest.mark.skipif(not (DEMO / "ufo_face").is_dir(), reason="needs the committed demo models")
def test_a_short_soak_has_no_errors_samples_rss_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "20", "--warmup-s", "5",
               "--window-s", "5", "--rate", "20", "--gallery", "20", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["errors"] == 0 and report["requests"] == 400 == report["answered_ok"]
    assert report["rss"]["samples"] >= 18 and report["rss"]["end_mb"] > 10
    assert [w["from_s"] for w in report["windows"]] == [0, 5, 10, 15]
    assert all(report["windows"][-1][op]["count"] > 0 for op in soak.EXPECTED)
    assert "0 errors" in result.stdout


def test_the_mix_fills_the_gallery_before_deleting() -> None:
    load = soak.Load(http=None, task="face", gallery=2)  # type: ignore[arg-type]
    assert [load.choose(n) for n in range(10)].count("delete") == 0  # nothing enrolled yet
    load.enrolled = ["a", "b", "c"]
    assert load.choose(5) == "delete" and load.choose(0) == "search"


def test_the_report_measures_rss_from_the_warm_up_and_counts_errors() -> None:
    args = argparse.Namespace(seconds=4.0, rate=1.0, concurrency=1, warmup_s=2.0, window_s=2.0)
    record = soak.Record(window_s=2.0)
    record.rss = [(0.0, 50 * 2**20), (2.0, 100 * 2**20), (3.0, 130 * 2**20), (4.0, 110 * 2**20)]
    for started, op, seconds in ((0.5, "search", 0.010), (2.5, "search", 0.020), (3.5, "embed", 0.030)):
        record.ok(started, op, seconds)
    record.error("delete", "500 boom")
    report = soak.summarise(record, args, sent=4)
    assert report["errors"] == 1 and report["errors_by_op"] == {"delete": 1} and report["answered_ok"] == 3
    assert report["rss"]["after_warmup_mb"] == 100 and report["rss"]["max_mb"] == 130
    assert report["rss"]["growth_after_warmup"] == pytest.approx(0.10)
    assert [w["all"]["count"] for w in report["windows"]] == [1, 2]
    assert [w["rss_mb"] for w in report["windows"]] == [50, 130]
    assert report["p99_ms_after_warmup"]["max"] == pytest.approx(29.9, abs=0.1)


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in ((["--seconds", "10", "--warmup-s", "10"], "--warmup-s"), (["--rate", "0"], "--rate"),
                         (["--task", "nope"], "no model ufo_nope")):
        with pytest.raises(SystemExit) as stop:
            soak.parse_args(argv)
        assert stop.value.code == 2 and needle in capsys.readouterr().err
