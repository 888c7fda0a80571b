"""Small file helpers shared by export and verify: atomic writes and content hashes.

A reader (Triton polling the repository, `ufo store verify`, the service) must never see a half-written
file, so every write goes to a temporary name in the same folder and is moved into place with
`os.replace`, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; served files must be readable by other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Atomic UTF-8 text write (see `write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Atomic `np.save` (no pickled objects)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
