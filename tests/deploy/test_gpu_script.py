"""bench/gpu.sh --dry-run on the CPU: every step's commands exist, the measurement modules import and parse
their arguments, the `gpu` tests are collected, and the report file is written with "not measured" rows."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .helpers import ROOT

SCRIPT = ROOT / "bench" / "gpu.sh"
EXPECTED_ROWS = ("FAISS GPU QPS", "FAISS GPU index build", "train step demo AMP", "train step small fp32",
                 "Triton GPU batching gain", "in-process best")


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_dry_run_writes_a_report_of_not_measured_rows(tmp_path):
    report = tmp_path / "report.md"
    result = run_script("--dry-run", "--out", str(report))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()
    assert "DRY RUN" in text and "| step" not in text, f"a step failed in the dry run:\n{text}"
    for what in EXPECTED_ROWS:
        assert re.search(rf"\| {re.escape(what)} \| not measured \|", text), f"no 'not measured' row {what!r}:\n{text}"
    collected = re.search(r"\| gpu tests \| (\d+) tests? collected", text)
    assert collected and int(collected.group(1)) >= 8, f"the gpu tests were not collected:\n{text}"


def test_bad_arguments_are_refused(tmp_path):
    result = run_script("--bogus")
    assert result.returncode == 2 and "unknown argument --bogus" in result.stderr


def test_shellcheck_if_available():
    binary = shutil.which("shellcheck")
    if binary is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run([binary, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
