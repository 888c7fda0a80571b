"""The GPU setups, offline: prod-gpu gives the FAISS holders (gateway, worker) a GPU, the GPU image, node
placement and valid FAISS GPU settings, while dev-cpu asks for none; the GPU image's lock
(docker/Dockerfile FAISS=gpu) swaps faiss-cpu for faiss-gpu-cu12 and keeps no package that pins NumPy < 2."""

from __future__ import annotations

import importlib.metadata
import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from .helpers import COMPONENT, ROOT, containers, pod_labels, pod_spec, render_overlay, settings_from_env, workloads

GPU = "nvidia.com/gpu"
FAISS_HOLDERS = ("gateway", "worker")
# What docker/Dockerfile drops from requirements.txt for FAISS=gpu (kept in step with its `grep -vE`).
DROPPED_FOR_GPU = ("faiss-cpu", "numpy", "nvidia-pytriton")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render_overlay(name) for name in ("dev-cpu", "prod-gpu")}


def _workload(objs: list[dict], component: str) -> dict:
    hits = [w for w in workloads(objs) if pod_labels(w).get(COMPONENT) == component]
    assert len(hits) == 1, f"expected one {component} workload, found {len(hits)}"
    return hits[0]


def _config_env(objs: list[dict]) -> dict[str, str]:
    maps = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("ufo-config")]
    assert len(maps) == 1, f"expected one ufo-config ConfigMap, found {len(maps)}"
    return maps[0]["data"]


@pytest.mark.parametrize("component", FAISS_HOLDERS)
def test_prod_gpu_gives_faiss_holders_a_gpu_on_gpu_nodes(rendered, component):
    workload = _workload(rendered["prod-gpu"], component)
    spec = pod_spec(workload)
    container = next(c for c in containers(spec) if c["name"] == component)
    resources = container["resources"]
    assert int(resources["requests"].get(GPU, 0)) == 1 == int(resources["limits"].get(GPU, 0)), (
        f"prod-gpu {component}: one {GPU} requested and limited, got {resources}")
    assert {"cpu", "memory"} <= set(resources["requests"]), f"{component}: the GPU patch lost cpu/memory requests"
    assert any(t.get("key") == GPU and t.get("effect") == "NoSchedule" for t in spec.get("tolerations") or []), (
        f"prod-gpu {component}: no toleration of the {GPU} taint")
    assert spec.get("nodeSelector", {}).get("nvidia.com/gpu.present") == "true", f"{component}: no GPU node selector"
    assert container["image"].endswith("-gpu"), f"prod-gpu {component}: not the GPU FAISS image ({container['image']})"


@pytest.mark.parametrize("component", FAISS_HOLDERS)
def test_dev_cpu_keeps_the_cpu_image_and_no_gpu(rendered, component):
    spec = pod_spec(_workload(rendered["dev-cpu"], component))
    container = next(c for c in containers(spec) if c["name"] == component)
    assert not container["image"].endswith("-gpu"), f"dev-cpu {component}: GPU image {container['image']}"
    assert not spec.get("nodeSelector") and not spec.get("tolerations"), f"dev-cpu {component}: GPU placement"
    for kind in ("requests", "limits"):
        assert GPU not in (container.get("resources", {}).get(kind) or {}), f"dev-cpu {component}: asks for a GPU"
    assert not any(k.startswith("UFO_INDEX__GPU__") for k in _config_env(rendered["dev-cpu"])), (
        "dev-cpu: FAISS GPU settings belong to prod-gpu")


def test_prod_gpu_faiss_settings_load_through_settings(rendered, monkeypatch):
    env = _config_env(rendered["prod-gpu"])
    assert {"UFO_INDEX__GPU__TEMP_MEMORY_MB", "UFO_INDEX__GPU__FLOAT16"} <= set(env), f"prod-gpu config: {sorted(env)}"
    gpu = settings_from_env(monkeypatch, env).index.gpu
    assert gpu.enabled and gpu.temp_memory_mb == int(env["UFO_INDEX__GPU__TEMP_MEMORY_MB"]), gpu
    assert gpu.float16 is (env["UFO_INDEX__GPU__FLOAT16"] == "true")


def test_faiss_gpu_settings_refuse_a_negative_memory(monkeypatch):
    with pytest.raises(ValueError, match="temp_memory_mb"):
        settings_from_env(monkeypatch, {"UFO_INDEX__GPU__TEMP_MEMORY_MB": "-5"})


def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_gpu_image_lock_swaps_faiss_and_numpy():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "grep -vE '^(" + "|".join(DROPPED_FOR_GPU) + ")=='" in dockerfile, "Dockerfile's GPU lock drops other pins"
    gpu = _pins(ROOT / "docker" / "requirements-gpu.txt")
    assert "faiss-gpu-cu12" in gpu and "faiss-cpu" not in gpu, f"docker/requirements-gpu.txt: {gpu}"
    assert Version(gpu["numpy"]).major == 2, "faiss-gpu-cu12 >= 1.12 requires NumPy 2"
    cpu = _pins(ROOT / "requirements.txt")
    assert "faiss-cpu" in cpu and Version(cpu["numpy"]).major == 1, "the CPU lock keeps faiss-cpu and NumPy 1"


def test_no_package_left_in_the_gpu_image_pins_numpy_below_2():
    """Every package the GPU image keeps from requirements.txt accepts the GPU image's NumPy (read from the
    installed distributions' metadata: the same versions as the lock)."""
    numpy = Version(_pins(ROOT / "docker" / "requirements-gpu.txt")["numpy"])
    kept = [name for name in _pins(ROOT / "requirements.txt") if name not in DROPPED_FOR_GPU]
    blockers = []
    for name in kept:
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            applies = req.name.lower() == "numpy" and (req.marker is None or req.marker.evaluate({"extra": ""}))
            if applies and not req.specifier.contains(numpy, prereleases=True):
                blockers.append(f"{name}: {text}")
    assert not blockers, f"these would pin NumPy below {numpy} in the GPU image: {blockers}"


def test_the_cpu_lock_still_needs_numpy_1_because_of_pytriton():
    """Why the CPU image stays on NumPy 1: nvidia-pytriton (the CPU Triton) pins it. If this fails, pytriton
    dropped the pin and one NumPy could serve both images (docs/deploy.md, "GPU images")."""
    requires = [Requirement(r) for r in importlib.metadata.requires("nvidia-pytriton") or []]
    numpy = next(r for r in requires if r.name.lower() == "numpy")
    assert not numpy.specifier.contains(Version("2.0.0")), f"nvidia-pytriton now accepts NumPy 2: {numpy}"
