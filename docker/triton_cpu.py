"""The CPU Triton of the compose `cpu` profile and the k8s `dev-cpu` overlay, run from the ufo-retrieval image.

Why not NVIDIA's tritonserver image with KIND_CPU models? It would work (it ships a CPU-capable onnxruntime
backend), but it is a multi-GB pull (CUDA, every backend) for a machine without a GPU, and nothing here can
test it. Instead the ufo-retrieval image, already on the machine, runs the same Triton release (2.51) that
the nvidia-pytriton wheel bundles with only its Python backend, beside our Python-based `onnxruntime`
backend (model_store/backends/onnxruntime): `model_store.triton.assemble_backend_directory` builds that
backend folder (in /tmp: the root file system is read-only), and the model repository loads unchanged — its
config says `backend: "onnxruntime"`, which on the GPU image is NVIDIA's native backend. This is the path
the tests run for real. Export with `ufo export --kind auto` (the default) or `--kind cpu`.

The flags are the production ones (`model_store.triton.server_command`: explicit model control,
auto-complete disabled, strict readiness, metrics on). Settings, all optional:
  TRITON_MODEL_REPOSITORY   model repository folder (default /models)
  TRITON_LOAD_MODELS        comma-separated model names to load at start, or * for all (default *)
  TRITON_ADDRESS            bind address of the three endpoints (default 0.0.0.0)
  TRITON_HTTP_PORT, TRITON_GRPC_PORT, TRITON_METRICS_PORT   (defaults 8000, 8001, 8002, as NVIDIA's image)
  TRITON_BACKEND_DIRECTORY  where the backend folder is assembled (default /tmp/triton/backends)
  TRITON_LOG_VERBOSE        tritonserver --log-verbose level (default 0)
  UFO_ORT_INTRA_OP_THREADS  ONNX Runtime threads per model instance (read by the backend; default: ORT's)
`--dry-run` prints the command instead of running it.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from model_store.triton import (
    Ports,
    assemble_backend_directory,
    find_tritonserver,
    server_command,
    server_environment,
)


def command_and_environment(env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The tritonserver command line and its environment, from TRITON_* variables in `env`."""
    repository = Path(env.get("TRITON_MODEL_REPOSITORY", "/models"))
    if not repository.is_dir():
        raise SystemExit(f"triton_cpu: model repository {repository} is not a folder (mount it there, or set "
                         "TRITON_MODEL_REPOSITORY)")
    install = find_tritonserver()
    backends = assemble_backend_directory(Path(env.get("TRITON_BACKEND_DIRECTORY", "/tmp/triton/backends")), install)
    ports = Ports(
        http=int(env.get("TRITON_HTTP_PORT", "8000")),
        grpc=int(env.get("TRITON_GRPC_PORT", "8001")),
        metrics=int(env.get("TRITON_METRICS_PORT", "8002")),
    )
    models = [name.strip() for name in env.get("TRITON_LOAD_MODELS", "*").split(",") if name.strip()]
    command = server_command(
        install, repository, backends, ports,
        address=env.get("TRITON_ADDRESS", "0.0.0.0"),
        load_models=models,
        log_verbose=int(env.get("TRITON_LOG_VERBOSE", "0")),
    )
    return command, server_environment(install, env)


def main(argv: list[str]) -> int:
    command, env = command_and_environment(dict(os.environ))
    if "--dry-run" in argv:
        print(shlex.join(command))
        return 0
    sys.stdout.flush()
    os.execve(command[0], command, env)  # tritonserver takes this process: it receives the stop signal itself


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
