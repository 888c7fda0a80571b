"""pyproject.toml declares what the code imports, and requirements.txt (the lock) pins every declared package.

`pip install .` must give a gateway that runs: every third-party module that service/ imports (at the top of a
file or inside a function) has to come from a base dependency, model_store/ and ufo/ may use the `train` and
`triton` extras as well. The installed metadata (what pip made of pyproject.toml) must list the same.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"ufo", "service", "model_store", "ufo_client", "tests", "bench"}
PROVIDED_AT_RUN_TIME = {"triton_python_backend_utils"}  # the Triton Python stub injects it into model.py
EXTRAS_ALLOWED = {"service": ("milvus",), "model_store": ("train", "triton"), "ufo": ("train",)}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(*extras: str) -> set[str]:
    """Distribution names of the base dependencies plus these extras."""
    spec = project()
    requirements = list(spec["dependencies"])
    for extra in extras:
        requirements += spec["optional-dependencies"][extra]
    return {normalise(Requirement(r).name) for r in requirements}


def imported_modules(package: str) -> dict[str, Path]:
    """Top-level names of every module imported anywhere in the package → one file importing it."""
    found: dict[str, Path] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def third_party(modules: dict[str, Path]) -> dict[str, Path]:
    return {m: p for m, p in modules.items()
            if m not in sys.stdlib_module_names and m not in FIRST_PARTY and m not in PROVIDED_AT_RUN_TIME}


@pytest.mark.parametrize("package", sorted(EXTRAS_ALLOWED))
def test_every_import_comes_from_a_declared_dependency(package: str) -> None:
    allowed = declared(*EXTRAS_ALLOWED[package])
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, path in sorted(third_party(imported_modules(package)).items()):
        providers = {normalise(d) for d in distributions.get(module, [])}
        if not providers & allowed:
            missing.append(f"{module} (imported by {path.relative_to(ROOT)}, provided by {sorted(providers) or '?'})")
    assert not missing, f"{package}/ imports modules pyproject.toml does not declare for it: {missing}"


def test_the_import_scan_sees_the_service_stack() -> None:
    """Guards the scan itself: the modules the gateway is built on are found, with lazy imports."""
    modules = third_party(imported_modules("service"))
    assert {"fastapi", "pydantic_settings", "redis", "tritonclient", "faiss", "uvicorn", "prometheus_client"} <= set(
        modules)


def lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not an exact pin"
            pins[normalise(name)] = Version(version.strip())
    return pins


def test_the_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = lock()
    spec = project()
    requirements = list(spec["dependencies"])
    for extra, items in spec["optional-dependencies"].items():
        if extra != "gpu":  # CUDA wheels: pinned by docker/requirements-gpu.txt, never on CPU machines
            requirements += [r for r in items if not r.startswith(spec["name"])]
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        pin = pins.get(normalise(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name} is not pinned")
        elif pin not in requirement.specifier:
            problems.append(f"{requirement.name}=={pin} is outside {requirement.specifier}")
    assert not problems, problems


def test_the_extras_are_declared() -> None:
    extras = project()["optional-dependencies"]
    assert {"train", "triton", "gpu", "dev"} <= set(extras)
    assert "torch" in declared("train") and "torch" not in declared()
    assert "nvidia-pytriton" in declared("triton")
    assert "faiss-gpu-cu12" in declared("gpu")
    assert {"pytest", "ruff", "schemathesis"} <= declared("dev")


def test_the_installed_metadata_matches_pyproject() -> None:
    """What pip built from pyproject.toml (bootstrap.sh reinstalls the project when the file changes)."""
    requires = importlib.metadata.requires("ufo-retrieval") or []
    base = {normalise(Requirement(r).name) for r in requires if "extra ==" not in r}
    assert base == declared()
    extras = set(importlib.metadata.metadata("ufo-retrieval").get_all("Provides-Extra") or [])
    assert {"train", "triton", "gpu", "dev"} <= extras
