"""Shared helpers for the deployment tests: paths, the Settings field an UFO_* variable sets, label
selectors, NetworkPolicy reachability, resource quantities, compose interpolation."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev-cpu", "prod-gpu", "milvus")
COMPONENT = "app.kubernetes.io/component"

# UFO_* variables that are read outside service/config.py Settings, and the file that reads each one.
UFO_ENV_OUTSIDE_SETTINGS = {
    "UFO_ORT_INTRA_OP_THREADS": "model_store/backends/onnxruntime/model.py",
    "UFO_CONFIG_FILE": "service/config.py",
}


# ---- settings ----

def settings_field(env_name: str) -> str | None:
    """The dotted Settings field that the environment variable `env_name` sets (prefix UFO_, nested
    with __, case-insensitive, as service/config.py configures it), or None when it sets none."""
    if not env_name.upper().startswith("UFO_"):
        return None
    parts = env_name[len("UFO_"):].lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        if depth < len(parts) - 1:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return None
            model = annotation
    return ".".join(parts)


def unknown_ufo_variables(names: list[str]) -> list[str]:
    """UFO_* names that neither set a Settings field nor are read elsewhere (checked in that file)."""
    unknown = []
    for name in names:
        if not name.upper().startswith("UFO_") or settings_field(name) is not None:
            continue
        reader = UFO_ENV_OUTSIDE_SETTINGS.get(name)
        if reader is None or name not in (ROOT / reader).read_text(encoding="utf-8"):
            unknown.append(name)
    return unknown


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None], **init: object) -> Settings:
    """Settings as the app would build them in a container whose environment is `env` (None = unset)."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("UFO_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if value is not None and name.upper().startswith("UFO_"):
            monkeypatch.setenv(name, str(value))
    return Settings(**init)


def cli_option(args: list[str], option: str) -> str | None:
    """The value after `option` in an argument list (`--port 8080` or `--port=8080`)."""
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


# ---- kubernetes ----

def kubectl() -> str:
    """kubectl's path; a clear failure (never a skip) when it is missing."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not on PATH: the k8s tests render the overlays with `kubectl kustomize`. Install "
                    "kubectl (it bundles kustomize), e.g. from https://kubernetes.io/docs/tasks/tools/")
    return path


def render_overlay(name: str) -> list[dict]:
    import yaml

    result = subprocess.run([kubectl(), "kustomize", str(ROOT / "k8s" / "overlays" / name)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize k8s/overlays/{name} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_spec(obj: dict) -> dict | None:
    """The pod spec of a workload (Deployment, StatefulSet, DaemonSet, Job, Pod), else None."""
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels") or {}
    return obj["spec"]["template"]["metadata"].get("labels") or {}


def workloads(objs: list[dict]) -> Iterator[dict]:
    return (obj for obj in objs if pod_spec(obj) is not None)


def containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers") or []) + list(spec["containers"])


def find(objs: list[dict], kind: str, name: str) -> dict:
    """The object of `kind` whose name is `name` (or `name` plus kustomize's hash suffix)."""
    hits = [o for o in objs if o["kind"] == kind and re.fullmatch(re.escape(name) + r"(-[a-z0-9]{10})?",
                                                                  o["metadata"]["name"])]
    assert len(hits) == 1, f"expected one {kind} named {name}, found {[o['metadata']['name'] for o in hits]}"
    return hits[0]


def selector_matches(selector: dict, labels: dict) -> bool:
    """Kubernetes LabelSelector semantics (matchLabels AND matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def selected_workloads(objs: list[dict], selector: dict) -> list[dict]:
    return [w for w in workloads(objs) if selector_matches(selector, pod_labels(w))]


def ingress_sources(objs: list[dict], target: dict, port: int) -> set[str]:
    """Who may open a TCP connection to `target`'s pods on `port` under the NetworkPolicies in `objs`:
    component labels of workloads in the namespace, '*' (any source) or 'other-namespaces' / 'ip-blocks'."""
    labels = pod_labels(target)
    named = {p.get("name"): p["containerPort"] for c in pod_spec(target)["containers"] for p in c.get("ports") or []}
    policies = [p for p in objs if p["kind"] == "NetworkPolicy"
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                and selector_matches(p["spec"]["podSelector"], labels)]
    if not policies:
        return {"*"}  # the pod is not isolated for ingress
    sources: set[str] = set()
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(_port_matches(p, port, named) for p in ports):
                continue
            peers = rule.get("from")
            if not peers:
                sources.add("*")
                continue
            for peer in peers:
                if "ipBlock" in peer:
                    sources.add("ip-blocks")
                elif "namespaceSelector" in peer:
                    sources.add("other-namespaces")
                else:
                    sources.update(pod_labels(w).get(COMPONENT, w["metadata"]["name"])
                                   for w in selected_workloads(objs, peer["podSelector"]))
    return sources


def _port_matches(rule_port: dict, port: int, named: dict) -> bool:
    if rule_port.get("protocol", "TCP") != "TCP":
        return False
    value = rule_port.get("port")
    if value is None:
        return True
    number = named.get(value) if isinstance(value, str) else value
    end = rule_port.get("endPort", number)
    return number is not None and number <= port <= end


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T|k)?$")
_MEM_UNITS = {None: 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(resource: str, value: str | int | float) -> float:
    """A resource quantity as a number (CPU in cores, memory in bytes, anything else as a count)."""
    text = str(value)
    if resource == "cpu":
        match = _CPU.match(text)
        assert match, f"bad cpu quantity {value!r}"
        return float(match.group(1)) / (1000 if match.group(2) else 1)
    if resource in ("memory", "ephemeral-storage"):
        match = _MEM.match(text)
        assert match, f"bad {resource} quantity {value!r}"
        return float(match.group(1)) * _MEM_UNITS[match.group(2)]
    return float(text)


# ---- docker compose ----

_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")


def interpolate(value: object) -> object:
    """Compose variable interpolation with an empty host environment: ${X:-default} → default, ${X} → '',
    $$ → $ (what `docker compose config` does when none of the variables is set)."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: "$" if m.group(0) == "$$" else (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def environment(service: dict) -> dict[str, str | None]:
    """A compose service's environment as a dict (list form `A=b` / `A` or mapping form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {item.split("=", 1)[0]: (item.split("=", 1)[1] if "=" in item else None) for item in env}
    return {k: (None if v is None else str(v)) for k, v in env.items()}
