"""Index snapshots: one data file (an uncompressed zip) plus a JSON sidecar with its checksum.

Data file entries: header.json, main.faiss (FAISS's own format, streamed, CPU copy of GPU
indexes), ids_utf8.npy + ids_ends.npy and metadata_utf8.npy + metadata_ends.npy (label → id / metadata
JSON: the strings' UTF-8 concatenation as uint8 and each one's end in code points; "" for dead labels and
empty metadata), alive.npy, delta_xb.npy, delta_labels.npy. Arrays use numpy's .npy format without pickles.
Why not one labels.json (format /1): json.dumps/json.loads of 100k labels is ONE C call that holds the GIL
13-15 ms, stalling a gateway's searches; decoding the arrays is one short C call plus a Python loop that
yields the GIL at every switch interval. Snapshots of format /1 still load (labels.json); /2 is written.

Each file is written to a temporary name, fsynced and moved into place with os.replace, the data
file first and the sidecar last. A reader never sees a half-written file; a crash between the two
moves leaves a data file the sidecar's checksum does not match, which `load_snapshot` refuses
loudly rather than serving it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from service.index.build import set_search_params, to_cpu, to_gpu
from service.index.errors import ModelVersionError, SnapshotError
from service.index.state import Generation

if TYPE_CHECKING:
    from service.index.vector_index import VectorIndex

log = logging.getLogger(__name__)

FORMAT = "ufo-index-snapshot/2"
_CHUNK = 8192  # labels per C call when turning arrays into Python objects (keeps each GIL hold short)
READABLE = (FORMAT, "ufo-index-snapshot/1")  # /1: labels in one labels.json, still loaded, no longer written


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar beside a snapshot data file."""
    return path.with_name(path.name + ".json")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")


def _write_array(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(name, "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def _read_array(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with zf.open(name) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _metadata_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, separators=(",", ":"))


def encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings → (their UTF-8 concatenation as uint8, int64 end offsets in code points)."""
    ends = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    joined = "".join(texts).encode("utf-8", "surrogatepass")  # ids from JSON may hold lone surrogates
    return np.frombuffer(joined, dtype=np.uint8), ends


def decode_texts(blob: np.ndarray, ends: np.ndarray) -> list[str]:
    """Inverse of `encode_texts`: one decode (a short C call), then slices in a loop that yields the GIL."""
    text = blob.tobytes().decode("utf-8", "surrogatepass")
    last = int(ends[-1]) if len(ends) else 0
    if last != len(text):
        raise ValueError(f"label offsets end at {last}, the text holds {len(text)} characters")
    out: list[str] = []
    start = 0
    for first in range(0, len(ends), _CHUNK):  # tolist in chunks: 100k at once is a 1.3 ms C call
        for end in ends[first : first + _CHUNK].tolist():
            out.append(text[start:end])
            start = end
    return out


def _read_labels(zf: zipfile.ZipFile, fmt: str) -> tuple[list[str], list[dict[str, Any]]]:
    """(ids, metadata) per label; "" / {} for dead labels."""
    if fmt != FORMAT:  # /1: one JSON document, null for dead labels
        labels = json.loads(zf.read("labels.json"))
        return ([i if i is not None else "" for i in labels["ids"]],
                [m if m is not None else {} for m in labels["metadata"]])
    ids = decode_texts(_read_array(zf, "ids_utf8.npy"), _read_array(zf, "ids_ends.npy"))
    blob = _read_array(zf, "metadata_utf8.npy")
    if not len(blob):  # no label has metadata (the common case): skip the decode loop
        return ids, [{} for _ in range(len(ids))]
    return ids, [json.loads(m) if m else {} for m in decode_texts(blob, _read_array(zf, "metadata_ends.npy"))]


def _label_texts(ids: list[str], metadata: list[dict[str, Any]], alive: np.ndarray) -> tuple[list[str], list[str]]:
    """Ids and metadata JSON per label ("" for dead labels and empty metadata); the common cases (no dead
    label, no metadata) without a Python loop, which would hold the GIL in 0.1 ms slices for ~10 ms."""
    live = alive.tolist()
    everyone = bool(alive.all())
    texts = ids if everyone else [item_id if ok else "" for item_id, ok in zip(ids, live, strict=True)]
    if not any(metadata):  # one C loop: every dict empty
        return texts, [""] * len(ids)
    return texts, [_metadata_json(m) if ok and m else "" for m, ok in zip(metadata, live, strict=True)]


def _capture(index: VectorIndex) -> dict[str, Any]:
    """Copy what a snapshot needs under the write lock (O(labels), no vector copies of main)."""
    with index._lock:
        gen, view = index._gen, index._view
        n = view.n_labels
        alive = view.alive[:n].copy()
        return {
            "header": {
                "format": FORMAT, "dim": index.dim, "model_version": index.model_version,
                "factory": index.factory, "search_params": index.search_params, "offset": index.offset,
                "built_at": index.built_at, "n_labels": n, "n_delta": view.n_delta, "count": view.n_live,
                "has_main": gen.main is not None,
            },
            "main": gen.main,
            "ids": view.ids[:n],  # shallow copies (one C call): the encoding happens outside the lock
            "metadata": view.metadata[:n],
            "alive": alive,
            "delta_xb": view.delta_xb[: view.n_delta],  # rows below n_delta never change
            "delta_labels": view.delta_labels[: view.n_delta].copy(),
        }


def _write_data(state: dict[str, Any], target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("header.json", json.dumps(state["header"]))
        if state["main"] is not None:
            with zf.open("main.faiss", "w", force_zip64=True) as f:
                faiss.write_index(to_cpu(state["main"]), faiss.PyCallbackIOWriter(f.write))
        ids, meta = _label_texts(state["ids"], state["metadata"], state["alive"])
        for name, texts in (("ids", ids), ("metadata", meta)):
            blob, ends = encode_texts(texts)
            _write_array(zf, f"{name}_utf8.npy", blob)
            _write_array(zf, f"{name}_ends.npy", ends)
        for name in ("alive", "delta_xb", "delta_labels"):
            _write_array(zf, f"{name}.npy", state[name])
    with target.open("rb+") as f:
        os.fsync(f.fileno())


def _write_json(payload: dict[str, Any], target: Path) -> None:
    with target.open("w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def save_snapshot(index: VectorIndex, path: str | Path) -> dict[str, Any]:
    """Write `index` to `path` + `path.json` atomically; return the sidecar dict."""
    path = Path(path)
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _capture(index)
    tmp_data, tmp_side = _temp_name(path), _temp_name(sidecar_path(path))
    try:
        _write_data(state, tmp_data)
        header = state["header"]
        sidecar = {
            "format": FORMAT,
            "model_version": header["model_version"],
            "dim": header["dim"],
            "count": header["count"],
            "offset": header["offset"],
            "factory": header["factory"],
            "search_params": header["search_params"],
            "built_at": header["built_at"],
            "built_at_iso": None if header["built_at"] is None
            else datetime.fromtimestamp(header["built_at"], UTC).isoformat(),
            "saved_at": datetime.now(UTC).isoformat(),
            "bytes": tmp_data.stat().st_size,
            "checksum": {"algorithm": "sha256", "value": sha256_file(tmp_data)},
        }
        _write_json(sidecar, tmp_side)
        os.replace(tmp_data, path)
        os.replace(tmp_side, sidecar_path(path))
        _fsync_dir(path.parent)
    finally:
        for leftover in (tmp_data, tmp_side):
            leftover.unlink(missing_ok=True)
    log.info("saved snapshot %s: %d items, offset %d, %.1f MB in %.2f s", path, sidecar["count"],
             sidecar["offset"], sidecar["bytes"] / 1e6, time.perf_counter() - t0)
    return sidecar


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of a snapshot, or SnapshotError when it is missing or unreadable."""
    side = sidecar_path(path)
    if not path.exists():
        raise SnapshotError(f"snapshot {path} does not exist")
    try:
        sidecar = json.loads(side.read_text())
    except FileNotFoundError as exc:
        raise SnapshotError(f"snapshot {path} has no sidecar {side.name}: cannot verify it, refusing to load") from exc
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"snapshot sidecar {side} is unreadable: {exc}") from exc
    if sidecar.get("format") not in READABLE:
        raise SnapshotError(f"snapshot {path}: unknown format {sidecar.get('format')!r}, expected one of {READABLE}")
    return sidecar


def verify_snapshot(path: Path) -> dict[str, Any]:
    """Check the data file against the sidecar's sha256; return the sidecar."""
    sidecar = read_sidecar(path)
    expected = sidecar.get("checksum", {}).get("value")
    actual = sha256_file(path)
    if actual != expected:
        raise SnapshotError(
            f"snapshot {path} is corrupted or partially written: sha256 {actual[:16]}… does not match "
            f"the sidecar's {str(expected)[:16]}…; refusing to load (rebuild from the store instead)")
    return sidecar


def load_snapshot(path: str | Path, *, model_version: str | None = None, use_gpu: bool | None = None
                  ) -> VectorIndex:
    """Verify and load a snapshot into a new VectorIndex (main on GPU when available/asked); refuse one of
    another model version when `model_version` is given."""
    path = Path(path)
    from service.index.vector_index import VectorIndex

    t0 = time.perf_counter()
    sidecar = verify_snapshot(path)
    if model_version is not None and model_version != sidecar["model_version"]:
        raise ModelVersionError(f"snapshot {path} holds model version {sidecar['model_version']!r}, "
                                f"expected {model_version!r}: rebuild the index for this model")
    try:
        with zipfile.ZipFile(path) as zf:
            header = json.loads(zf.read("header.json"))
            main = None
            if header["has_main"]:
                with zf.open("main.faiss") as f:
                    main = faiss.read_index(faiss.PyCallbackIOReader(f.read))
            ids, metadata = _read_labels(zf, header.get("format", FORMAT))
            alive, delta_xb, delta_labels = (_read_array(zf, f"{n}.npy") for n in ("alive", "delta_xb", "delta_labels"))
    except (zipfile.BadZipFile, KeyError, RuntimeError, ValueError) as exc:
        raise SnapshotError(f"snapshot {path} cannot be read: {exc}") from exc
    if (header["model_version"] != sidecar["model_version"] or header.get("format") != sidecar["format"]
            or not len(alive) == len(ids) == len(metadata) == header["n_labels"]):
        raise SnapshotError(f"snapshot {path}: header and sidecar disagree; refusing to load")
    index = VectorIndex(header["dim"], header["model_version"], factory=header["factory"],
                        search_params=header["search_params"])
    index.offset, index.built_at = header["offset"], header["built_at"]
    if main is not None and (use_gpu or use_gpu is None):
        main = to_gpu(main)
    if main is not None and header["search_params"]:
        set_search_params(main, header["search_params"])
    index._gen = _restore_generation(header["dim"], main, ids, metadata, alive, delta_xb, delta_labels)
    index._view = index._gen.view()
    log.info("loaded snapshot %s: %d items (%d main, %d delta), offset %d in %.2f s", path, len(index),
             index.main_size, index.delta_size, index.offset, time.perf_counter() - t0)
    return index


def _restore_generation(dim: int, main: faiss.Index | None, ids: list[str], metadata: list[dict[str, Any]],
                        alive: np.ndarray, delta_xb: np.ndarray, delta_labels: np.ndarray) -> Generation:
    gen = Generation(dim, main)
    gen.ids, gen.metadata = ids, metadata
    gen.alive = alive.astype(bool).copy()
    live = np.flatnonzero(gen.alive)
    gen.id_to_label = {ids[label]: label for first in range(0, len(live), _CHUNK)
                       for label in live[first : first + _CHUNK].tolist()}
    gen.delta_xb = np.ascontiguousarray(delta_xb, dtype=np.float32).reshape(-1, dim)
    gen.delta_labels = delta_labels.astype(np.int64)
    gen.n_delta = len(delta_labels)
    return gen
