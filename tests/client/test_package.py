"""`pip install ./ufo_client` gives a package of its own that depends on httpx, pydantic and anyio only."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.service.api.conftest import ROOT


def test_the_client_builds_as_its_own_wheel(tmp_path: Path) -> None:
    source = Path(shutil.copytree(ROOT / "ufo_client", tmp_path / "src", ignore=shutil.ignore_patterns(
        "__pycache__", "build", "*.egg-info")))  # a copy: the build writes into the source folder
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-index", str(source), "-w", str(tmp_path / "dist")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("ufo_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert {"ufo_client/__init__.py", "ufo_client/client.py", "ufo_client/calls.py"} <= names
    assert not any(name.endswith("pyproject.toml") for name in names)
    required = sorted(line.split(":", 1)[1].split(";")[0].strip().split("<")[0].split(">")[0]
                      for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert required == ["anyio", "httpx", "pydantic"]
