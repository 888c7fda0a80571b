"""docker-compose.yml: parsed with PyYAML (services, profiles, healthchecks, the GPU reservation, volumes,
secrets, ports and environment checked against service/config.py Settings), the Prometheus and Grafana
files it mounts, and `docker-compose config` when the binary is installed (scripts/system_deps.sh)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from .helpers import ROOT, cli_option, environment, interpolate, settings_from_env, unknown_ufo_variables

COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"triton", "triton-cpu", "gateway", "worker", "gateway-gpu", "worker-gpu", "redis", "prometheus", "grafana",
            "milvus-etcd", "milvus-minio", "milvus-standalone", "gateway-milvus", "worker-milvus"}
ALWAYS_ON = {"redis", "prometheus", "grafana"}
# The `gpu` profile's twins of the gateway and the worker (GPU image, a GPU for FAISS), and the profiles of each.
GPU_TWINS = {"gateway-gpu": "gateway", "worker-gpu": "worker"}
APP_PROFILES = {"gateway": ["cpu", "embedded"], "worker": ["cpu", "embedded"], "gateway-gpu": ["gpu"],
                "worker-gpu": ["gpu"], "gateway-milvus": ["milvus"], "worker-milvus": ["milvus"]}
GPU_HOLDERS = {"triton", *GPU_TWINS}
DASHBOARD_METRICS = ("ufo_http_requests_total", "ufo_http_request_duration_seconds", "ufo_inference_batch_size",
                     "ufo_index_items", "ufo_index_rebuilds_total", "ufo_index_recall_at_k", "ufo_model_info",
                     "ufo_model_upgrades_total")
# Series the dashboard charts before the code that exports them exists, and who will export them.
PENDING_METRICS: dict[str, str] = {}
SERIES_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml is missing at the repository root"
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def _service_metrics() -> set[str]:
    """Metric names the service code defines (`f"{PREFIX}_name"` with PREFIX = "ufo", or "ufo_name" literals)."""
    names = set()
    for path in (ROOT / "service").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names.update(f"ufo_{n}" for n in re.findall(r'f"\{PREFIX\}_(\w+)"', text))
        names.update(re.findall(r'"(ufo_[a-z0-9_]+)"', text))
    return names


def _names_on_network(services: dict[str, dict], profile: str) -> set[str]:
    """Host names that resolve on the default network when `profile` is active: services and their aliases."""
    names = set()
    for name, service in services.items():
        if service.get("profiles") and profile not in service["profiles"]:
            continue
        names.add(name)
        for network in (service.get("networks") or {}).values():
            names.update((network or {}).get("aliases") or [])
    return names


def _volume_target(spec: str | dict) -> tuple[str, str, bool]:
    """(source, target, read_only) of a short or long volume spec."""
    if isinstance(spec, dict):
        return spec.get("source", ""), spec["target"], bool(spec.get("read_only"))
    parts = spec.split(":")
    return parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")


def test_services_and_profiles(services):
    assert set(services) == SERVICES, f"compose services {sorted(services)}, expected {sorted(SERVICES)}"
    assert services["triton"].get("profiles") == ["gpu"], "the GPU Triton belongs to the `gpu` profile"
    assert services["triton-cpu"].get("profiles") == ["cpu", "milvus"], "the CPU Triton: `cpu` and `milvus` profiles"
    for name in ALWAYS_ON:
        assert not services[name].get("profiles"), f"{name} must run in every profile"
    for name, profiles in APP_PROFILES.items():
        assert services[name].get("profiles") == profiles, f"{name}: profiles {services[name].get('profiles')}"
    for profile in ("gpu", "cpu", "milvus"):
        names = _names_on_network(services, profile)
        assert {"triton", "gateway", "worker"} <= names, f"no host triton/gateway/worker in the {profile} profile"


def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test must start with CMD/CMD-SHELL"


def test_gpu_reservation_only_in_the_gpu_profile(services):
    for name in GPU_HOLDERS:
        assert services[name].get("profiles") == ["gpu"], f"{name} holds a GPU: it belongs to the gpu profile"
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1, f"{name}: one device reservation expected, got {devices}"
        device = devices[0]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], f"{name}: GPU reservation {device}"
        count = str(device.get("count", device.get("device_ids")))
        assert count == "all" or int(count) >= 1, f"{name}: GPU count {count}"
    for name, service in services.items():
        if name not in GPU_HOLDERS:
            reservations = ((service.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
            assert "devices" not in reservations, f"{name} must not reserve GPUs (the cpu profile runs without one)"


def test_triton_services_mount_the_model_repository_and_share_memory(services):
    cpu_env = environment(services["triton-cpu"])
    for name, models in (("triton", "/models"), ("triton-cpu", cpu_env["TRITON_MODEL_REPOSITORY"])):
        mounts = [_volume_target(v) for v in services[name]["volumes"]]
        assert any(target == models and ro for _, target, ro in mounts), f"{name}: {models} must be mounted :ro"
        assert services[name].get("shm_size"), f"{name}: set shm_size (the Python backend uses /dev/shm)"
    assert services["triton-cpu"]["entrypoint"][-1] == "/opt/ufo/triton_cpu.py", "triton-cpu: launcher"
    sources = {_volume_target(v)[0] for n in ("triton", "triton-cpu", "gateway", "worker", *GPU_TWINS)
               for v in services[n]["volumes"] if _volume_target(v)[1] == "/models"}
    assert len(sources) == 1, f"Triton, gateway and worker must mount the same model repository, got {sources}"


def test_redis_persists_with_aof_on_a_named_volume(compose, services):
    redis = services["redis"]
    command = redis["command"]
    assert cli_option(command, "--appendonly") == "yes", f"redis must run with --appendonly yes: {command}"
    assert cli_option(command, "--appendfsync") == "always", f"acknowledged writes must be fsynced: {command}"
    data_dir = cli_option(command, "--dir") or "/data"
    named = [s for s, t, _ in map(_volume_target, redis["volumes"]) if t == data_dir]
    assert named and named[0] in compose["volumes"], f"redis {data_dir} must be a declared named volume"
    assert not redis.get("ports"), "redis must not be published on the host"


def test_gateway_and_worker_settings_agree_with_service_config(services, monkeypatch):
    from service.config import Settings

    defaults = Settings()
    names = [n for s in services.values() for n in environment(s)]
    unknown = unknown_ufo_variables(names)
    assert not unknown, f"{unknown} in docker-compose.yml are not fields of service/config.py Settings (drift?)"
    gateway = services["gateway"]
    port = int(cli_option(gateway["command"], "--port"))
    assert port == defaults.port, f"gateway --port {port} differs from Settings.port {defaults.port}"
    targets = [int(str(p).rsplit(":", 1)[-1]) if not isinstance(p, dict) else p["target"] for p in gateway["ports"]]
    assert targets == [port], f"gateway publishes container port(s) {targets}, serves on {port}"
    assert f":{port}/healthz" in " ".join(gateway["healthcheck"]["test"]), "gateway healthcheck on another port"
    for name in APP_PROFILES:
        service = services[name]
        env = environment(service)
        init = {"host": cli_option(service["command"], "--host"), "port": port} if name.startswith("gateway") else {}
        settings = settings_from_env(monkeypatch, env, **init)  # raises on a bad value or an unsafe combination
        assert settings.environment == "production", f"{name}: UFO_ENVIRONMENT=production expected"
        assert settings.store_url.startswith("redis://"), f"{name}: gateway replicas and worker share Redis"
        mounts = {t: (s, ro) for s, t, ro in map(_volume_target, service["volumes"])}
        assert str(settings.data_dir) in mounts and not mounts[str(settings.data_dir)][1], (
            f"{name}: UFO_DATA_DIR={settings.data_dir} must be a writable volume")
        assert mounts[str(settings.data_dir)][0] == "ufo-data", f"{name}: data dir must be the shared ufo-data"
        assert str(settings.repository) in mounts, f"{name}: UFO_REPOSITORY={settings.repository} is not mounted"
        for profile in {"gpu", "cpu", "milvus"} & set(APP_PROFILES[name]):
            hosts = _names_on_network(services, profile)
            triton_host = settings.triton.url.split(":")[0]
            assert triton_host in hosts, f"{name}: UFO_TRITON__URL host {triton_host} unknown in profile {profile}"
            assert settings.store_url.split("//")[1].split(":")[0] in hosts, f"{name}: Redis host unknown"
        if name.startswith("gateway"):
            assert settings.auth_required, "the gateway binds 0.0.0.0: API keys are required"
    triton_port = int(environment(gateway)["UFO_TRITON__URL"].split(":")[1])
    assert triton_port == 8001 and environment(gateway)["UFO_TRITON__PROTOCOL"] == "grpc", "Triton gRPC is :8001"


def test_secrets_come_from_files_or_the_environment(compose, services):
    gateway_env = environment(services["gateway"])
    keys_file = gateway_env["UFO_API_KEYS_FILE"]
    secret = keys_file.removeprefix("/run/secrets/")
    assert keys_file.startswith("/run/secrets/") and secret in services["gateway"]["secrets"], (
        "UFO_API_KEYS_FILE must point at a compose secret mounted into the gateway")
    assert "file" in compose["secrets"][secret], f"secret {secret} must come from a file"
    assert gateway_env.get("UFO_API_KEYS") is None, "UFO_API_KEYS may only be passed through from the host"
    for name, service in services.items():
        for key, value in environment(service).items():
            sensitive = any(word in key for word in ("PASSWORD", "SECRET", "TOKEN", "API_KEYS"))
            if sensitive and not key.endswith("_FILE"):
                assert value is None, f"{name}: {key} has a literal value in docker-compose.yml"
    ignored = (ROOT / "deploy" / "secrets" / ".gitignore").read_text()
    assert "*" in ignored.splitlines(), "deploy/secrets/.gitignore must ignore everything but itself and README"


def test_prometheus_scrapes_gateway_and_triton(services):
    mounts = {t: s for s, t, _ in map(_volume_target, services["prometheus"]["volumes"])}
    config = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs") or []:
            targets.update(f"{n}:{sd['port']}" for n in sd["names"])
        for static in job.get("static_configs") or []:
            targets.update(static["targets"])
    gateway_port = int(cli_option(services["gateway"]["command"], "--port"))
    assert f"gateway:{gateway_port}" in targets, f"Prometheus does not scrape the gateway: {targets}"
    assert "triton:8002" in targets, f"Prometheus does not scrape Triton's metrics port: {targets}"


def test_grafana_provisions_the_dashboard(services):
    mounts = {t: s for s, t, _ in map(_volume_target, services["grafana"]["volumes"])}
    provisioning = ROOT / mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    uids = {d["uid"] for d in datasources}
    assert any(d["url"] == "http://prometheus:9090" for d in datasources), "datasource must point at prometheus"
    provider = yaml.safe_load((provisioning / "dashboards" / "ufo.yml").read_text())["providers"][0]
    dashboards = ROOT / mounts[provider["options"]["path"]]
    files = sorted(dashboards.glob("*.json"))
    assert files, f"no dashboard JSON under {dashboards}"
    dashboard = json.loads(files[0].read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    missing = [m for m in DASHBOARD_METRICS if m not in exprs]
    assert not missing, f"the dashboard does not chart {missing}"
    assert "nv_inference" in exprs, "the dashboard should chart Triton's own batch/queue metrics"
    defined = _service_metrics()
    for series in sorted(set(re.findall(r"\bufo_[a-z0-9_]+", exprs))):
        base = next((series.removesuffix(s) for s in SERIES_SUFFIXES if series.removesuffix(s) in defined), series)
        assert base in defined or base.removesuffix("_total") in PENDING_METRICS, (
            f"the dashboard charts {series}, which no service/ code exports (metric names drifted?)")
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, f"panel {panel['title']} uses an unprovisioned datasource"
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for word in ("request rate", "latency", "batch", "index size", "rebuild"):
        assert word in titles, f"no dashboard panel about {word}"


@pytest.mark.parametrize("profile", ["gpu", "cpu", "milvus"])
def test_docker_compose_config_accepts_the_file(profile):
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (scripts/system_deps.sh installs Debian's docker-compose)")
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_REPOSITORY", "TRITON_GPU_COUNT", "GATEWAY_PORT",
                                                               "API_KEYS_FILE", "UFO_BACKEND", "UFO_API_KEYS")}
    result = subprocess.run([binary, "-f", str(COMPOSE_FILE), "--profile", profile, "config"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert result.returncode == 0, f"docker-compose config (--profile {profile}) rejected the file:\n{result.stderr}"
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == SERVICES, "docker-compose config lost services"
    for name in GPU_HOLDERS:
        devices = resolved["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia", f"docker-compose config dropped {name}'s GPU reservation"
    for twin in GPU_TWINS:
        assert resolved["services"][twin]["build"]["args"] == {"FAISS": "gpu"}, f"{twin}: not built with GPU FAISS"


@pytest.mark.parametrize("twin", sorted(GPU_TWINS))
def test_gpu_twins_differ_only_in_image_gpu_and_profile(services, twin):
    """gateway-gpu / worker-gpu are the CPU services on the GPU image with a GPU: nothing else may drift."""
    cpu, gpu = services[GPU_TWINS[twin]], services[twin]
    differing = {k for k in set(cpu) | set(gpu) if cpu.get(k) != gpu.get(k)}
    assert differing == {"image", "build", "profiles", "deploy", "networks"}, f"{twin} differs in {sorted(differing)}"
    assert gpu["image"].endswith("-gpu") and gpu["build"]["args"] == {"FAISS": "gpu"}, f"{twin}: image {gpu['image']}"
    assert cpu["image"] == services["triton-cpu"]["image"] and "args" not in cpu["build"], (
        f"{GPU_TWINS[twin]}: the CPU services keep the CPU image")
    assert GPU_TWINS[twin] in gpu["networks"]["default"]["aliases"], f"{twin} must answer to {GPU_TWINS[twin]!r}"
