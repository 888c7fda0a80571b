"""The Milvus deployments (issue 13), offline: the compose `milvus` profile (Milvus standalone with etcd and MinIO,
gateway/worker twins pointed at it), the Kubernetes `milvus` overlay (generic checks in test_k8s.py: it is in
OVERLAYS) and the pinned Helm chart with our values, which cannot be rendered here (no helm, no network)."""

from __future__ import annotations

import re

import pytest
import yaml

from .helpers import COMPONENT, ROOT, containers, environment, find, interpolate, pod_labels, pod_spec, render_overlay
from .helpers import workloads as all_workloads

COMPOSE_FILE = ROOT / "docker-compose.yml"
OVERLAY = ROOT / "k8s" / "overlays" / "milvus"
HELM = OVERLAY / "milvus-cluster"
MILVUS_SERVICES = {"milvus-etcd", "milvus-minio", "milvus-standalone"}
TWINS = {"gateway-milvus": "gateway", "worker-milvus": "worker"}
MILVUS_ENV = {"UFO_INDEX__ENGINE": "milvus", "UFO_MILVUS__URI": "http://milvus-standalone:19530"}
GPU = "nvidia.com/gpu"
SEMVER = re.compile(r"\d+\.\d+\.\d+")


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()))["services"]


@pytest.fixture(scope="module")
def objs() -> list[dict]:
    return render_overlay("milvus")


@pytest.fixture(scope="module")
def helm() -> dict:
    return yaml.safe_load((HELM / "kustomization.yaml").read_text())["helmCharts"][0]


def _values(name: str = "values.yaml") -> dict:
    return yaml.safe_load((HELM / name).read_text())


# ---- docker compose ----

def test_compose_milvus_profile_runs_standalone_with_etcd_and_minio(services):
    for name in MILVUS_SERVICES | set(TWINS):
        assert services[name].get("profiles") == ["milvus"], f"{name} belongs to the milvus profile only"
        tag = services[name]["image"].rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: pin the image tag, got {services[name]['image']}"
    standalone = services["milvus-standalone"]
    env = environment(standalone)
    assert env["ETCD_ENDPOINTS"] == "milvus-etcd:2379" and env["MINIO_ADDRESS"] == "milvus-minio:9000", env
    assert {k: v["condition"] for k, v in standalone["depends_on"].items()} == {
        "milvus-etcd": "service_healthy", "milvus-minio": "service_healthy"}
    assert "localhost:9091/healthz" in " ".join(standalone["healthcheck"]["test"]), "Milvus's health endpoint"
    for name in ("milvus-etcd", "milvus-minio"):
        assert not services[name].get("ports"), f"{name} must not be published on the host"
    for port in standalone.get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), f"Milvus is published on the host's loopback only, not {port}"
    assert "milvus" in services["triton-cpu"]["profiles"], "the milvus profile needs a Triton for the gateway"


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_compose_milvus_twins_differ_only_in_the_index_engine(services, twin):
    plain, milvus = services[TWINS[twin]], services[twin]
    differing = {k for k in set(plain) | set(milvus) if plain.get(k) != milvus.get(k)}
    assert differing <= {"profiles", "environment", "depends_on", "networks"}, f"{twin} differs in {sorted(differing)}"
    extra = {k: v for k, v in environment(milvus).items() if environment(plain).get(k, "<unset>") != v}
    assert extra == MILVUS_ENV, f"{twin}: environment beyond the plain service's: {extra}"
    assert milvus["depends_on"]["milvus-standalone"]["condition"] == "service_healthy", twin
    assert milvus["depends_on"]["redis"] == plain["depends_on"]["redis"], twin
    assert TWINS[twin] in milvus["networks"]["default"]["aliases"], f"{twin} must answer to {TWINS[twin]!r}"


def test_compose_milvus_settings_load(services, monkeypatch):
    from .helpers import settings_from_env

    for twin in TWINS:
        settings = settings_from_env(monkeypatch, environment(services[twin]))
        assert settings.index.engine == "milvus" and settings.milvus.uri == MILVUS_ENV["UFO_MILVUS__URI"]
        assert settings.milvus.uri.split("//")[1].split(":")[0] in services, "the URI names the Milvus service"


# ---- kubernetes overlay ----

def _component(objs: list[dict], component: str) -> dict:
    hits = [w for w in all_workloads(objs) if pod_labels(w).get(COMPONENT) == component]
    assert len(hits) == 1, f"one {component} workload expected, found {len(hits)}"
    return hits[0]


def test_overlay_points_gateway_and_worker_at_the_charts_milvus(objs, helm):
    config = find(objs, "ConfigMap", "ufo-config")["data"]
    assert config["UFO_INDEX__ENGINE"] == "milvus"
    # the chart names the proxy Service after the release (its fullname: the release name when it contains "milvus")
    service = helm["releaseName"] if "milvus" in helm["releaseName"] else f"{helm['releaseName']}-milvus"
    assert config["UFO_MILVUS__URI"] == f"http://{service}.{helm['namespace']}.svc.cluster.local:19530"
    assert helm["namespace"] != find(objs, "Namespace", "ufo")["metadata"]["name"], (
        "Milvus lives in its own namespace: the ufo namespace's default-deny ingress policy would cut its pods off")
    for component in ("gateway", "worker"):
        container = next(c for c in pod_spec(_component(objs, component))["containers"] if c["name"] == component)
        env = {e["name"]: e for e in container.get("env") or []}
        token = env["UFO_MILVUS__TOKEN"]
        assert "value" not in token and token["valueFrom"]["secretKeyRef"] == {
            "name": "ufo-milvus-token", "key": "token", "optional": True}, f"{component}: token {token}"


def test_overlay_gateways_are_stateless_and_autoscaled(objs):
    hpa = find(objs, "HorizontalPodAutoscaler", "ufo-gateway")["spec"]
    assert hpa["minReplicas"] >= 3 and hpa["maxReplicas"] >= 20, f"HPA range {hpa}"
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["metrics"]), hpa["metrics"]
    for workload in all_workloads(objs):
        wants_gpu = pod_labels(workload).get(COMPONENT) == "triton"
        for container in containers(pod_spec(workload)):
            limits = (container.get("resources") or {}).get("limits") or {}
            assert (GPU in limits) == wants_gpu, f"{workload['metadata']['name']}: GPU {limits.get(GPU)}"
            if pod_labels(workload).get(COMPONENT) in ("gateway", "worker"):
                assert not container["image"].endswith("-gpu"), "no GPU FAISS image in Milvus mode"


def test_triton_patch_is_prod_gpus():
    def body(path):
        return [line for line in path.read_text().splitlines() if not line.startswith("#")]

    assert body(OVERLAY / "triton-gpu.yaml") == body(ROOT / "k8s/overlays/prod-gpu/triton-gpu.yaml"), (
        "k8s/overlays/milvus/triton-gpu.yaml drifted from prod-gpu's")


# ---- the Helm chart ----

def test_chart_is_pinned_and_documented(helm):
    assert helm["name"] == "milvus" and helm["repo"] == "https://zilliztech.github.io/milvus-helm/", helm
    assert SEMVER.fullmatch(str(helm["version"])), f"pin an exact chart version, got {helm['version']!r}"
    install = f"helm install {helm['releaseName']} milvus/milvus --version {helm['version']} -n {helm['namespace']}"
    for path in (OVERLAY / "kustomization.yaml", HELM / "kustomization.yaml", ROOT / "docs" / "deploy.md"):
        assert install in path.read_text().replace("\\\n", " ").replace("  ", " "), f"{path}: no `{install}`"
    assert (HELM / helm["valuesFile"]).is_file()


def test_chart_values_cluster_replicas_and_auth():
    values = _values()
    assert values["cluster"]["enabled"] is True, "cluster mode"
    assert SEMVER.fullmatch(values["image"]["all"]["tag"].removeprefix("v")), "pin Milvus itself too"
    assert len(values["replicaResourceGroups"]) >= 2, "at least two in-memory replicas of every collection"
    for component in ("proxy", "queryNode", "dataNode", "streamingNode", "mixCoordinator"):
        spec = values[component]
        assert spec["replicas"] >= 2, f"{component}: one replica is a single point of failure"
        requests, limits = spec["resources"]["requests"], spec["resources"]["limits"]
        assert {"cpu", "memory"} <= set(requests) and {"cpu", "memory"} <= set(limits), f"{component} resources"
    assert values["mixCoordinator"]["activeStandby"]["enabled"], "several coordinators need active-standby"
    user = yaml.safe_load(values["extraConfigFiles"]["user.yaml"])
    assert user["common"]["security"]["authorizationEnabled"] is True, "authentication on in the cluster"


def test_gpu_values_put_gpus_on_query_nodes_of_the_same_release():
    base, gpu = _values(), _values("values-gpu.yaml")
    assert gpu["image"]["all"]["tag"] == base["image"]["all"]["tag"] + "-gpu", "the GPU build of the same release"
    for component in ("queryNode", "dataNode"):
        resources = gpu[component]["resources"]
        assert resources["requests"][GPU] == resources["limits"][GPU] >= 1, f"{component}: GPU request = limit"
        assert any(t["key"] == GPU for t in gpu[component]["tolerations"]), f"{component}: tolerate GPU nodes"
