"""Supernet checkpoints: written atomically, read back with errors that name the file and the problem."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ufo.model.config import ArchSpec
from ufo.model.supernet import UFOSupernet

FORMAT = "ufo-supernet/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (missing, corrupt, or of another configuration)."""


def save_torch_atomic(path: str | Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, then os.replace: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    save_torch_atomic(path, {"format": FORMAT, **payload})


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for truncated/corrupt zips
        raise CheckpointError(f"checkpoint {path} is truncated or not a torch checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"checkpoint {path} is not a UFO supernet checkpoint (format {found!r}, "
                              f"expected {FORMAT!r})")
    return ckpt


def checkpoint_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def check_same_arch(path: str | Path, saved: dict[str, Any], expected: ArchSpec) -> None:
    """Compare the raw saved record (not a rebuilt ArchSpec, which may not even be valid) field by field."""
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in expected.to_dict().items()}
    got = {k: list(v) if isinstance(v, tuple) else v for k, v in saved.items()}
    diffs = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    if diffs:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs expected {b!r}" for k, (a, b) in diffs.items())
        raise CheckpointError(f"checkpoint {path} is from another architecture ({detail})")


def supernet_from_checkpoint(path: str | Path, ckpt: dict[str, Any] | None = None) -> UFOSupernet:
    """Rebuild the supernet the checkpoint was trained as and load its weights (strictly)."""
    ckpt = ckpt if ckpt is not None else load_checkpoint(path)
    try:
        arch = ArchSpec.from_dict(ckpt["arch"])
        model = UFOSupernet(arch, dict(ckpt["num_classes"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has a malformed architecture record: {exc}") from exc
    try:
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} weights do not fit its architecture: {exc}") from exc
    return model.eval()
