"""k8s/: every overlay renders with `kubectl kustomize`, every object validates offline against the
Kubernetes schemas (kubernetes-validate), and the policies hold: requests and limits, probes, non-root
read-only containers, GPUs only in prod-gpu, selectors that select, NetworkPolicies that let only the
gateway and the worker reach Redis and Triton, settings that exist in service/config.py."""

from __future__ import annotations

import pytest
import yaml

from service.config import WorkerSettings

from .helpers import (
    COMPONENT,
    OVERLAYS,
    ROOT,
    cli_option,
    containers,
    find,
    ingress_sources,
    pod_labels,
    pod_spec,
    quantity,
    render_overlay,
    selected_workloads,
    selector_matches,
    settings_from_env,
    unknown_ufo_variables,
    workloads,
)

# Oldest and newest Kubernetes versions the manifests are checked against.
K8S_VERSIONS = ("1.28", "1.37")
# Workloads with a liveness probe only, and why: a container that listens on a port must have both probes.
LIVENESS_ONLY = {"ufo-worker": "serves no traffic; its liveness is the heartbeat file its loop touches"}
HEARTBEAT = "/tmp/ufo-worker.heartbeat"
GPU = "nvidia.com/gpu"
GPU_COMPONENTS = ("triton", "gateway", "worker")  # Triton, and the FAISS holders (tests/deploy/test_gpu.py)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    return request.param, render_overlay(request.param)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render_overlay(name) for name in OVERLAYS}


def _tools() -> list[dict]:
    return [doc for path in sorted((ROOT / "k8s" / "tools").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def _component(objs: list[dict], component: str) -> dict:
    hits = [w for w in workloads(objs) if pod_labels(w).get(COMPONENT) == component]
    assert len(hits) == 1, f"expected one workload with {COMPONENT}={component}, found {len(hits)}"
    return hits[0]


def _container(workload: dict, name: str) -> dict:
    by_name = {c["name"]: c for c in pod_spec(workload)["containers"]}
    assert name in by_name, f"{workload['metadata']['name']} has no container {name!r} (has {sorted(by_name)})"
    return by_name[name]


def test_every_object_validates_against_the_kubernetes_schemas(overlay):
    import kubernetes_validate

    name, objs = overlay
    errors = []
    for obj in objs + _tools():
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
                errors.append(f"{obj['kind']}/{obj['metadata']['name']} (k8s {version}): {exc}")
    assert not errors, f"overlay {name}: objects rejected by the Kubernetes schemas:\n" + "\n".join(errors)


def test_overlay_has_the_expected_objects(overlay):
    name, objs = overlay
    kinds = {(o["kind"], o["metadata"]["name"].rsplit("-", 1)[0] if o["kind"] in ("ConfigMap", "Secret")
              else o["metadata"]["name"]) for o in objs}
    expected = {
        ("Deployment", "ufo-gateway"), ("Deployment", "ufo-worker"), ("Deployment", "ufo-triton"),
        ("StatefulSet", "ufo-redis"), ("Service", "ufo-gateway"), ("Service", "ufo-triton"),
        ("Service", "ufo-redis"), ("HorizontalPodAutoscaler", "ufo-gateway"),
        ("PodDisruptionBudget", "ufo-gateway"), ("PersistentVolumeClaim", "ufo-models"),
        ("PersistentVolumeClaim", "ufo-data"), ("ConfigMap", "ufo-config"), ("Secret", "ufo-api-keys"),
    }
    assert expected <= kinds, f"overlay {name} lacks {sorted(expected - kinds)}"
    assert sum(o["kind"] == "NetworkPolicy" for o in objs) >= 3, f"overlay {name}: NetworkPolicies missing"


def test_every_object_lives_in_the_overlay_namespace(overlay):
    name, objs = overlay
    namespaces = [o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"]
    assert len(namespaces) == 1, f"overlay {name}: expected one Namespace, got {namespaces}"
    stray = [f"{o['kind']}/{o['metadata']['name']}" for o in objs
             if o["kind"] != "Namespace" and o["metadata"].get("namespace") != namespaces[0]]
    assert not stray, f"overlay {name}: objects outside namespace {namespaces[0]}: {stray}"


def test_every_container_has_requests_and_limits(overlay):
    name, objs = overlay
    problems = []
    for workload in list(workloads(objs)) + _tools():
        for container in containers(pod_spec(workload)):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            for resource in ("cpu", "memory"):
                if resource not in requests or resource not in limits:
                    problems.append(f"{where}: {resource} request and limit both required")
                elif quantity(resource, requests[resource]) > quantity(resource, limits[resource]):
                    problems.append(f"{where}: {resource} request {requests[resource]} > limit {limits[resource]}")
            if (GPU in requests or GPU in limits) and requests.get(GPU, limits.get(GPU)) != limits.get(GPU):
                problems.append(f"{where}: {GPU} request must equal its limit")
    assert not problems, f"overlay {name}:\n" + "\n".join(problems)


def test_containers_run_non_root_with_read_only_root_and_a_writable_tmp(overlay):
    name, objs = overlay
    problems = []
    for workload in list(workloads(objs)) + _tools():
        spec = pod_spec(workload)
        pod_context = spec.get("securityContext") or {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for container in containers(spec):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = {**pod_context, **(container.get("securityContext") or {})}
            if context.get("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot must be true")
            if not isinstance(context.get("runAsUser"), int) or context["runAsUser"] == 0:
                problems.append(f"{where}: runAsUser must be a non-zero uid (runAsNonRoot needs a numeric user)")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem must be true")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation must be false")
            if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities must drop ALL")
            if context.get("privileged"):
                problems.append(f"{where}: privileged")
            tmp = [m for m in container.get("volumeMounts") or [] if m["mountPath"] == "/tmp"]
            if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
                problems.append(f"{where}: /tmp must be an emptyDir (the root file system is read-only)")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{workload['metadata']['name']}: automountServiceAccountToken must be false")
    assert not problems, f"overlay {name}:\n" + "\n".join(problems)


def test_probes_where_a_container_listens(overlay):
    name, objs = overlay
    problems = []
    for workload in workloads(objs):
        for container in pod_spec(workload)["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
            needed = ("livenessProbe", "readinessProbe")
            if workload["metadata"]["name"] in LIVENESS_ONLY:
                assert not ports, f"{where} has only liveness ({LIVENESS_ONLY[where.split('/')[0]]}) but listens"
                needed = ("livenessProbe",)
            for probe_name in needed:
                probe = container.get(probe_name)
                if not probe:
                    problems.append(f"{where}: {probe_name} missing")
                    continue
                for handler in ("httpGet", "tcpSocket"):
                    port = (probe.get(handler) or {}).get("port")
                    if port is not None and port not in ports and port not in ports.values():
                        problems.append(f"{where}: {probe_name} uses port {port!r}, not a container port {ports}")
    assert not problems, f"overlay {name}:\n" + "\n".join(problems)


def _http_path(container: dict, probe: str) -> str:
    return ((container.get(probe) or {}).get("httpGet") or {}).get("path", "")


def test_probes_use_the_service_health_endpoints(overlay):
    name, objs = overlay
    gateway = _container(_component(objs, "gateway"), "gateway")
    assert _http_path(gateway, "livenessProbe") == "/healthz", f"{name}: gateway liveness must be /healthz"
    assert _http_path(gateway, "readinessProbe") == "/readyz", f"{name}: gateway readiness must be /readyz"
    assert _http_path(gateway, "startupProbe") == "/healthz", f"{name}: gateway startup probe must be /healthz"
    triton = _container(_component(objs, "triton"), "triton")
    assert _http_path(triton, "livenessProbe") == "/v2/health/live", f"{name}: Triton liveness /v2/health/live"
    assert _http_path(triton, "readinessProbe") == "/v2/health/ready", f"{name}: Triton readiness /v2/health/ready"


def test_worker_liveness_checks_the_heartbeat_its_loop_touches(overlay):
    name, objs = overlay
    worker = _container(_component(objs, "worker"), "worker")
    env = {e["name"]: e.get("value") for e in worker.get("env") or []}
    assert env.get("UFO_WORKER__HEARTBEAT_FILE") == HEARTBEAT, f"{name}: the worker must beat {HEARTBEAT}"
    command = worker["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["python", "/opt/ufo/healthcheck.py"], f"{name}: worker liveness runs {command}"
    url = command[2]
    assert url.startswith(f"file://{HEARTBEAT}?max_age_s="), f"{name}: worker liveness checks {url}"
    max_age_s = float(url.split("max_age_s=")[1])
    settings = WorkerSettings()
    longest_gap_s = max(settings.block_s, settings.heartbeat_s)  # between two beats of a live worker
    assert max_age_s > 3 * longest_gap_s, f"{name}: a limit of {max_age_s} s would kill a live worker"
    assert "readinessProbe" not in worker, f"{name}: nothing routes to the worker"


def test_triton_requests_a_gpu_only_in_prod_gpu(rendered):
    prod = _container(_component(rendered["prod-gpu"], "triton"), "triton")
    limits = prod["resources"].get("limits") or {}
    assert int(limits.get(GPU, 0)) >= 1, f"prod-gpu: Triton must request {GPU} (limits: {limits})"
    assert any(t.get("key") == GPU for t in pod_spec(_component(rendered["prod-gpu"], "triton")).get(
        "tolerations") or []), "prod-gpu: Triton should tolerate the nvidia.com/gpu taint of GPU nodes"
    for workload in workloads(rendered["dev-cpu"]):
        for container in containers(pod_spec(workload)):
            resources = container.get("resources") or {}
            assert GPU not in (resources.get("limits") or {}) and GPU not in (resources.get("requests") or {}), (
                f"dev-cpu: {workload['metadata']['name']}/{container['name']} requests a GPU")
    for workload in workloads(rendered["prod-gpu"]):
        if pod_labels(workload).get(COMPONENT) not in GPU_COMPONENTS:
            for container in containers(pod_spec(workload)):
                assert GPU not in (container.get("resources", {}).get("limits") or {}), (
                    f"prod-gpu: only {GPU_COMPONENTS} hold GPUs, {workload['metadata']['name']} asks for one")


def test_dev_cpu_runs_the_cpu_triton_launcher(rendered):
    triton = _container(_component(rendered["dev-cpu"], "triton"), "triton")
    assert triton.get("command", [])[-1:] == ["/opt/ufo/triton_cpu.py"], (
        f"dev-cpu: Triton should run docker/triton_cpu.py from the ufo-retrieval image, got {triton.get('command')}")
    assert "ufo-retrieval" in triton["image"], f"dev-cpu: CPU Triton image {triton['image']}"
    prod = _container(_component(rendered["prod-gpu"], "triton"), "triton")
    assert "ufo-triton" in prod["image"] and "command" not in prod, (
        "prod-gpu: Triton should run the ufo-triton image with its own entrypoint")


def test_services_select_their_pods_and_ports(overlay):
    name, objs = overlay
    problems = []
    for service in (o for o in objs if o["kind"] == "Service"):
        targets = selected_workloads(objs, {"matchLabels": service["spec"].get("selector") or {}})
        if len(targets) != 1:
            problems.append(f"Service {service['metadata']['name']} selects {len(targets)} workloads")
            continue
        ports = {p.get("name"): p["containerPort"] for c in pod_spec(targets[0])["containers"]
                 for p in c.get("ports") or []}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if target not in ports and target not in ports.values():
                problems.append(f"Service {service['metadata']['name']}: targetPort {target!r} not in {ports}")
    assert not problems, f"overlay {name}:\n" + "\n".join(problems)


def test_controllers_select_their_own_pod_template(overlay):
    name, objs = overlay
    for workload in workloads(objs):
        if workload["kind"] == "Pod":
            continue
        assert selector_matches(workload["spec"]["selector"], pod_labels(workload)), (
            f"{name}: {workload['kind']}/{workload['metadata']['name']} selector does not match its pod labels")


def test_hpa_and_pdb_target_the_gateway(overlay):
    name, objs = overlay
    gateway = find(objs, "Deployment", "ufo-gateway")
    hpa = find(objs, "HorizontalPodAutoscaler", "ufo-gateway")["spec"]
    assert (hpa["scaleTargetRef"]["kind"], hpa["scaleTargetRef"]["name"]) == ("Deployment", "ufo-gateway")
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"], f"{name}: HPA range {hpa}"
    assert hpa["minReplicas"] <= gateway["spec"].get("replicas", 1) <= hpa["maxReplicas"], (
        f"{name}: gateway replicas {gateway['spec'].get('replicas')} outside the HPA range")
    pdb = find(objs, "PodDisruptionBudget", "ufo-gateway")["spec"]
    assert [w["metadata"]["name"] for w in selected_workloads(objs, pdb["selector"])] == ["ufo-gateway"], (
        f"{name}: the PodDisruptionBudget must select exactly the gateway pods")
    if "minAvailable" in pdb:  # a floor the HPA minimum cannot meet would block every node drain
        assert int(pdb["minAvailable"]) < hpa["minReplicas"], f"{name}: PDB minAvailable blocks drains"


def test_referenced_configmaps_secrets_and_claims_exist(overlay):
    name, objs = overlay
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    problems = []
    for workload in workloads(objs):
        spec = pod_spec(workload)
        templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates") or []}
        mounted = {m["name"] for c in containers(spec) for m in c.get("volumeMounts") or []}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for mount in mounted - set(volumes) - templates:
            problems.append(f"{workload['metadata']['name']}: volumeMount {mount} has no volume")
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                wanted = ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            elif "secret" in volume:
                wanted = ("Secret", volume["secret"]["secretName"])
            elif "configMap" in volume:
                wanted = ("ConfigMap", volume["configMap"]["name"])
            else:
                continue
            if wanted not in names:
                problems.append(f"{workload['metadata']['name']}: {wanted[0]} {wanted[1]} does not exist")
        for container in containers(spec):
            for source in container.get("envFrom") or []:
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in source and (kind, source[key]["name"]) not in names:
                        problems.append(f"{workload['metadata']['name']}: {kind} {source[key]['name']} missing")
    assert not problems, f"overlay {name}:\n" + "\n".join(problems)


def test_shared_volumes_and_redis_persistence(overlay):
    name, objs = overlay
    config = find(objs, "ConfigMap", "ufo-config")["data"]
    for component in ("gateway", "worker"):
        workload = _component(objs, component)
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        mounts = {m["mountPath"]: m for m in _container(workload, component)["volumeMounts"]}
        for setting, claim, read_only in (("UFO_REPOSITORY", "ufo-models", True), ("UFO_DATA_DIR", "ufo-data", False)):
            mount = mounts.get(config[setting])
            assert mount, f"{name}: {component} does not mount {setting}={config[setting]}"
            claim_name = volumes[mount["name"]].get("persistentVolumeClaim", {}).get("claimName")
            assert claim_name == claim, f"{name}: {component} {config[setting]} should be the {claim} claim"
            assert bool(mount.get("readOnly")) == read_only, f"{name}: {component} {config[setting]} readOnly"
    redis = find(objs, "StatefulSet", "ufo-redis")
    args = _container(redis, "redis").get("args") or []
    assert cli_option(args, "--appendonly") == "yes", f"{name}: Redis must run with --appendonly yes, got {args}"
    assert cli_option(args, "--appendfsync") == "always", f"{name}: acknowledged writes must be fsynced: {args}"
    data_dir = cli_option(args, "--dir")
    templates = {t["metadata"]["name"] for t in redis["spec"].get("volumeClaimTemplates") or []}
    assert any(m["mountPath"] == data_dir and m["name"] in templates
               for m in _container(redis, "redis")["volumeMounts"]), f"{name}: Redis --dir {data_dir} not on a PVC"
    headless = find(objs, "Service", redis["spec"]["serviceName"])
    assert headless["spec"].get("clusterIP") == "None", f"{name}: the StatefulSet's service should be headless"


def test_settings_names_and_values_agree_with_service_config(overlay, monkeypatch):
    from service.config import Settings

    name, objs = overlay
    config = find(objs, "ConfigMap", "ufo-config")["data"]
    defaults = Settings()
    for component in ("gateway", "worker"):
        container = _container(_component(objs, component), component)
        env = dict(config)
        env.update({e["name"]: e.get("value") for e in container.get("env") or []})
        names = list(env) + [e["name"] for w in workloads(objs) for c in containers(pod_spec(w))
                             for e in c.get("env") or []]
        unknown = unknown_ufo_variables(names)
        assert not unknown, f"{name}: {unknown} are not fields of service/config.py Settings (drift?)"
        args = container.get("args") or []
        init = {}
        if component == "gateway":
            init = {"host": cli_option(args, "--host"), "port": int(cli_option(args, "--port"))}
            ports = [p["containerPort"] for p in container["ports"]]
            assert ports == [init["port"]] == [defaults.port], (
                f"{name}: gateway --port {init['port']}, containerPort {ports} and Settings.port {defaults.port}")
        settings = settings_from_env(monkeypatch, env, **init)  # raises on a bad value or an unsafe combination
        assert settings.environment == "production" and settings.backend == "triton"
        assert settings.store_url.startswith("redis://"), f"{name}: replicas need the Redis store"
        if component == "gateway":
            assert settings.auth_required and settings.api_keys_file, f"{name}: gateway must read API keys"
    triton_service = find(objs, "Service", config["UFO_TRITON__URL"].split(":")[0])
    assert int(config["UFO_TRITON__URL"].split(":")[1]) in [p["port"] for p in triton_service["spec"]["ports"]]
    # headless: the name resolves to every Triton pod, which the client spreads its calls over
    assert triton_service["spec"].get("clusterIP") == "None", f"{name}: {triton_service['metadata']['name']} headless"
    assert triton_service["spec"]["selector"].get(COMPONENT) == "triton", f"{name}: the headless Service selects Triton"
    redis_host = config["UFO_STORE_URL"].split("//")[1].split(":")[0]
    find(objs, "Service", redis_host)


def test_gateway_reads_api_keys_from_the_secret(overlay):
    name, objs = overlay
    gateway = _component(objs, "gateway")
    container = _container(gateway, "gateway")
    keys_file = {e["name"]: e.get("value") for e in container["env"]}["UFO_API_KEYS_FILE"]
    mount = next(m for m in container["volumeMounts"] if keys_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod_spec(gateway)["volumes"] if v["name"] == mount["name"])
    secret = find(objs, "Secret", "ufo-api-keys")
    assert volume.get("secret", {}).get("secretName") == secret["metadata"]["name"], (
        f"{name}: UFO_API_KEYS_FILE={keys_file} is not on the ufo-api-keys Secret")
    assert keys_file.rsplit("/", 1)[1] in secret["data"], f"{name}: the Secret has no key for {keys_file}"
    for workload in workloads(objs):
        for c in containers(pod_spec(workload)):
            literal = [e["name"] for e in c.get("env") or [] if e["name"] == "UFO_API_KEYS" and "value" in e]
            assert not literal, f"{name}: API key records must come from the Secret, not a literal env value"


def test_placeholder_key_file_parses_and_grants_nothing():
    """The committed placeholder must not crash the gateway, and must not hold a usable record."""
    from service.api.auth import read_records

    placeholder = ROOT / "k8s" / "base" / "secrets" / "api_keys"
    assert read_records([], placeholder) == [], f"{placeholder} must hold only comments (it is a placeholder)"


def test_network_policies_select_existing_pods(overlay):
    name, objs = overlay
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") for p in policies), (
        f"{name}: a default-deny ingress policy (empty podSelector, no rules) is missing")
    for policy in policies:
        assert policy["spec"]["podSelector"] == {} or selected_workloads(objs, policy["spec"]["podSelector"]), (
            f"{name}: NetworkPolicy {policy['metadata']['name']} selects no pod (labels drifted?)")
        for rule in policy["spec"].get("ingress") or []:
            for peer in rule.get("from") or []:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert selected_workloads(objs, peer["podSelector"]), (
                        f"{name}: NetworkPolicy {policy['metadata']['name']} allows a peer that matches no pod")


def test_only_gateway_and_worker_reach_redis_and_triton(overlay):
    name, objs = overlay
    redis, triton = _component(objs, "redis"), _component(objs, "triton")
    assert ingress_sources(objs, redis, 6379) == {"gateway", "worker"}, f"{name}: Redis :6379"
    for port in (8000, 8001):
        assert ingress_sources(objs, triton, port) == {"gateway", "worker"}, f"{name}: Triton :{port}"
    assert ingress_sources(objs, triton, 8002) <= {"other-namespaces"}, f"{name}: Triton metrics :8002"
    assert ingress_sources(objs, _component(objs, "gateway"), 8080) == {"*"}, f"{name}: the API must be open"
    assert ingress_sources(objs, _component(objs, "worker"), 8080) == set(), f"{name}: nothing reaches the worker"


def test_images_are_pinned(overlay):
    name, objs = overlay
    for workload in list(workloads(objs)) + _tools():
        for container in containers(pod_spec(workload)):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{name}: {container['name']} image {image} needs a pinned tag"
