"""Run NVIDIA's real tritonserver (the binary bundled in the nvidia-pytriton wheel) over a model repository.

The bundled server has only the Python backend, so `assemble_backend_directory` builds a backend folder
holding `python/` (libtriton_python.so, triton_python_backend_utils.py, and the stub for this interpreter)
plus our Python-based `onnxruntime/` shim. Repositories then load unchanged: their config says
`backend: "onnxruntime"`, which on a GPU image is NVIDIA's native backend.

`TritonServer` is a context manager for development and tests: it starts the server on free loopback
ports with production flags (explicit model control, auto-complete disabled, metrics on), waits for
readiness (bounded), loads/unloads models through the repository API, and stops the server (SIGTERM, then
SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SHIM_DIR = Path(__file__).with_name("backends") / "onnxruntime"
_PY_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


class TritonServerError(RuntimeError):
    """The server could not start, or refused a repository request (the message says why)."""


@dataclass(frozen=True)
class TritonInstall:
    """Paths inside the nvidia-pytriton wheel."""

    binary: Path
    python_backend: Path  # libtriton_python.so + triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub built for this interpreter's Python version
    libs: Path  # nvidia_pytriton.libs: the shared libraries the binary links against


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


def find_tritonserver() -> TritonInstall:
    """Locate the tritonserver bundled with nvidia-pytriton (raises FileNotFoundError naming what lacks)."""
    try:
        import pytriton
    except ImportError as exc:
        raise FileNotFoundError("nvidia-pytriton is not installed: it bundles the tritonserver binary") from exc
    root = Path(pytriton.__file__).parent / "tritonserver"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / _PY_VERSION / "triton_python_backend_stub",
        libs=Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs",
    )
    for path in (install.binary, install.python_backend, install.stub, install.libs):
        if not path.exists():
            raise FileNotFoundError(f"tritonserver install incomplete: {path} is missing")
    return install


def assemble_backend_directory(dest: Path, install: TritonInstall | None = None) -> Path:
    """Fill `dest` with `python/` (Python backend + stub) and our `onnxruntime/` shim; returns `dest`."""
    install = install or find_tritonserver()
    dest = Path(dest)
    python_dir = dest / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(install.python_backend / name, python_dir / name)
    shutil.copy2(install.stub, python_dir / "triton_python_backend_stub")
    shim = dest / "onnxruntime"
    shim.mkdir(exist_ok=True)
    shutil.copy2(SHIM_DIR / "model.py", shim / "model.py")
    return dest


def libpython_dir() -> Path | None:
    """The folder holding this interpreter's shared libpython (None for a statically linked Python)."""
    name = sysconfig.get_config_var("LDLIBRARY") or f"libpython{_PY_VERSION}.so"
    for folder in (sysconfig.get_config_var("LIBDIR"), str(Path(sys.base_prefix) / "lib")):
        if folder and (Path(folder) / name).exists():
            return Path(folder)
    return None


def server_environment(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and its Python stubs.

    LD_LIBRARY_PATH starts with the wheel's libraries and this interpreter's libpython folder, so the stub
    links the same libpython as this interpreter (a pyenv Python's stub otherwise picks up the system
    libpython3.11 and fails on `_thread.RLock`). PYTHONPATH starts with this interpreter's site-packages,
    so the stub imports the same numpy and onnxruntime. PATH starts with this interpreter's bin folder.
    """
    env = dict(os.environ if base is None else base)
    # Even a system libpython folder goes first: an inherited LD_LIBRARY_PATH may hold another libpython3.x.
    first = [str(install.libs), str(libpython_dir() or "")]
    env["LD_LIBRARY_PATH"] = _join_paths(first, env.get("LD_LIBRARY_PATH", ""))
    paths = sysconfig.get_paths()
    env["PYTHONPATH"] = _join_paths([paths["purelib"], paths["platlib"]], env.get("PYTHONPATH", ""))
    env["PATH"] = _join_paths([str(Path(sys.executable).parent)], env.get("PATH", ""))
    return env


def _join_paths(first: list[str], existing: str) -> str:
    """`first` then the existing entries, without duplicates or empty entries."""
    return ":".join(dict.fromkeys(p for p in [*first, *existing.split(":")] if p))


def server_command(
    install: TritonInstall,
    repository: Path,
    backend_directory: Path,
    ports: Ports,
    *,
    address: str = "127.0.0.1",
    load_models: Sequence[str] = (),
    log_verbose: int = 0,
) -> list[str]:
    """The tritonserver command line with the production flags."""
    command = [
        str(install.binary),
        f"--model-repository={Path(repository).resolve()}",
        f"--backend-directory={Path(backend_directory).resolve()}",
        "--model-control-mode=explicit",
        "--disable-auto-complete-config",  # 2.51's spelling of --strict-model-config=true
        "--strict-readiness=true",
        "--exit-on-error=false",  # one broken model must not take the others down
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        f"--http-address={address}",
        f"--http-port={ports.http}",
        f"--grpc-address={address}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-address={address}",
        f"--metrics-port={ports.metrics}",
        "--exit-timeout-secs=5",
        f"--log-verbose={log_verbose}",
    ]
    command += [f"--load-model={name}" for name in load_models]
    return command


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if someone takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def free_ports(address: str = "127.0.0.1") -> Ports:
    """Three distinct free ports."""
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port(address))
    http, grpc, metrics = sorted(ports)
    return Ports(http, grpc, metrics)


class TritonServer:
    """A tritonserver process over one repository, on free loopback ports.

    Use as `with TritonServer(repo, load_models=["m"]) as server: ...`; `server.http_url`,
    `server.grpc_url` and `server.metrics_url` are the endpoints; `load_model`/`unload_model` use the
    repository API. The server's log is kept in `log_path` (in `workdir`, a temporary folder by default).
    """

    def __init__(
        self,
        repository: Path,
        *,
        load_models: Sequence[str] = (),
        workdir: Path | None = None,
        ready_timeout_s: float = 60.0,
        log_verbose: int = 0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.repository = Path(repository)
        self.load_models = tuple(load_models)
        self.ready_timeout_s = ready_timeout_s
        self.log_verbose = log_verbose
        self.extra_env = dict(extra_env or {})
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="ufo-triton-"))
        self.log_path = self.workdir / "tritonserver.log"
        self.ports: Ports | None = None
        self._process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        """host:port for tritonclient.http (no scheme, as tritonclient expects)."""
        return f"127.0.0.1:{self._ports().http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self._ports().grpc}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self._ports().metrics}/metrics"

    def _ports(self) -> Ports:
        if self.ports is None:
            raise TritonServerError("the server is not started")
        return self.ports

    def start(self, attempts: int = 3) -> TritonServer:
        """Start the server and wait until it is ready; retries on a port race."""
        install = find_tritonserver()
        backends = assemble_backend_directory(self.workdir / "backends", install)
        env = {**server_environment(install), **self.extra_env}
        for attempt in range(1, attempts + 1):
            self.ports = free_ports()
            command = server_command(
                install, self.repository, backends, self.ports,
                load_models=self.load_models, log_verbose=self.log_verbose,
            )
            log.info("starting tritonserver (attempt %d): %s", attempt, " ".join(command))
            with open(self.log_path, "ab") as log_file:
                # A session of its own: stop() can signal the server and the stubs it spawned, by its id.
                self._process = subprocess.Popen(
                    command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
                )
            if self._wait_ready():
                return self
            self.stop()
            if "address already in use" not in self.logs().lower():
                break
        raise TritonServerError(f"tritonserver did not become ready; log {self.log_path}:\n{self.logs()[-4000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            if self.is_ready():
                return True
            time.sleep(0.1)
        return False

    def is_ready(self) -> bool:
        """True when the server answers /v2/health/ready with 200."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _repository_call(self, path: str) -> None:
        request = urllib.request.Request(f"http://{self.http_url}/v2/repository/{path}", data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=300):
                return
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", errors="replace")
            try:
                message = json.loads(body).get("error", body)
            except ValueError:
                message = body
            raise TritonServerError(message) from None

    def load_model(self, name: str) -> None:
        """Load (or reload, picking up new versions) a model; raises TritonServerError with Triton's reason."""
        self._repository_call(f"models/{name}/load")

    def unload_model(self, name: str) -> None:
        self._repository_call(f"models/{name}/unload")

    def logs(self) -> str:
        """The server log so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the server's process group, then SIGKILL it if it has not exited in `timeout_s`."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop in %.0f s: killing it", timeout_s)
        _signal_group(process.pid, signal.SIGKILL)  # also reaps stubs left behind in the group
        process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, sig)
