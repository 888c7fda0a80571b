"""Image decoding for training, preprocessed by the contract in `model_store.preprocessing` (which the export and
the service use too).

`preprocess` works on an already-decoded PIL image; `load_image` reads a file;
`ImageCache` keeps each file decoded and resized once, as uint8, for training from memory. All three resize
the same way (PIL bicubic on the uint8 RGB image, like the reference code's PIL-based transforms), so the
cached path and the file path give identical arrays.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from model_store.preprocessing import normalize, resize_rgb
from ufo.data.types import DataError

log = logging.getLogger(__name__)


def preprocess(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """float32 [3, H, W]: the paper's preprocessing of a decoded PIL image."""
    return normalize(resize_rgb(image, size))


def decode_resized(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] of the image file at `path`; DataError naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as image:
            image.load()
            return resize_rgb(image, size)
    except FileNotFoundError as exc:
        raise DataError(f"missing image {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"unreadable image {path}: {exc}") from exc


def load_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """float32 [3, H, W]: read `path` and apply the paper's preprocessing."""
    return normalize(decode_resized(path, size))


class ImageCache:
    """Every file of `paths` decoded and resized once, held as one uint8 array [N, H, W, 3].

    Rows are filled lazily on first use (or all at once by `preload`), so the content never depends on the
    order images are first asked for. Meant for the small demo sets: a real Market train split at 256x128
    takes about 1.3 GB.
    """

    def __init__(self, paths: Sequence[str | Path], size: tuple[int, int]):
        self.paths = [str(p) for p in paths]
        self.size = (int(size[0]), int(size[1]))
        self._pixels = np.zeros((len(self.paths), *self.size, 3), dtype=np.uint8)
        self._loaded = np.zeros(len(self.paths), dtype=bool)
        self._row = {path: i for i, path in enumerate(self.paths)}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.paths)

    def row_of(self, path: str | Path) -> int:
        try:
            return self._row[str(path)]
        except KeyError as exc:
            raise KeyError(f"{path} is not in this ImageCache") from exc

    def _fill(self, rows: np.ndarray, workers: int = 1) -> None:
        missing = [int(r) for r in np.unique(rows) if not self._loaded[r]]
        if not missing:
            return

        def fill_row(row: int) -> None:
            self._pixels[row] = decode_resized(self.paths[row], self.size)

        with self._lock:
            if workers > 1 and len(missing) > 1:
                with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding and resizing
                    list(pool.map(fill_row, missing))
            else:
                for row in missing:
                    fill_row(row)
            self._loaded[missing] = True

    def preload(self, workers: int = 1) -> None:
        """Decode every image now (fails early, naming the first bad file)."""
        started = time.perf_counter()
        self._fill(np.arange(len(self.paths)), workers)
        log.debug("decoded %d images at %s in %.1f s", len(self), self.size, time.perf_counter() - started)

    def pixels(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 [B, H, W, 3] for the given row indices."""
        rows = np.asarray(rows, dtype=np.int64)
        self._fill(rows)
        return self._pixels[rows]

    def normalized(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 [B, 3, H, W], preprocessed exactly as `load_image` would."""
        return normalize(self.pixels(rows))
