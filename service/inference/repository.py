"""Pick, per task, the model version to serve from a model repository written by `model_store`.

`<repo>/<model>/<version>/{model.onnx, manifest.json}`: the highest version whose manifest validates,
names its own folder, and whose model.onnx matches the manifest's sha256 wins. A broken version is
skipped with a warning (a half-copied file must not take a task down when an older version is fine);
a task with no usable version at all is an error naming every problem found.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError

from model_store.files import sha256_file
from model_store.manifest import MANIFEST_FILE, TASK_NAME_PATTERN, Manifest, read_manifest
from service.inference.errors import RepositoryError

log = logging.getLogger(__name__)



class RepositoryEntry(NamedTuple):
    """The version chosen for one task."""

    model_dir: Path
    version: int
    manifest: Manifest

    @property
    def onnx_path(self) -> Path:
        return self.model_dir / str(self.version) / self.manifest.onnx_file


def list_version_dirs(model_dir: Path) -> list[Path]:
    """Integer-named version folders, highest first (hidden staging folders are ignored)."""
    dirs = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(dirs, key=lambda p: int(p.name), reverse=True)


def check_version(version_dir: Path, verify_hash: bool = True) -> tuple[Manifest | None, str | None]:
    """(manifest, None) when the version is usable, else (manifest or None, what is wrong)."""
    try:
        manifest = read_manifest(version_dir / MANIFEST_FILE)
    except FileNotFoundError:
        return None, f"{MANIFEST_FILE} missing"
    except ValidationError as exc:
        return None, f"invalid {MANIFEST_FILE}: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}"
    except (OSError, ValueError) as exc:
        return None, f"unreadable {MANIFEST_FILE}: {exc}"
    if manifest.version != int(version_dir.name) or manifest.model_name != version_dir.parent.name:
        return manifest, (f"manifest says {manifest.model_name}/{manifest.version}, "
                          f"folder is {version_dir.parent.name}/{version_dir.name}")
    onnx_path = version_dir / manifest.onnx_file
    if not onnx_path.is_file():
        return manifest, f"{manifest.onnx_file} missing"
    if verify_hash and sha256_file(onnx_path) != manifest.onnx_sha256:
        return manifest, f"{manifest.onnx_file} sha256 does not match the manifest (corrupt or half-copied)"
    return manifest, None


def best_version(model_dir: Path, verify_hash: bool = True) -> tuple[RepositoryEntry | None, list[str], set[str]]:
    """The highest usable version of one model, the problems met on the way, and the tasks its
    manifests claim (broken ones included, so a task whose only model is broken gets a clear error)."""
    problems: list[str] = []
    claimed: set[str] = set()
    for version_dir in list_version_dirs(model_dir):
        manifest, problem = check_version(version_dir, verify_hash)
        if manifest is not None:
            claimed.add(manifest.task)
        if problem is None and manifest is not None:
            return RepositoryEntry(model_dir, manifest.version, manifest), problems, claimed
        where = f"{model_dir.name}/{version_dir.name}"
        log.warning("skipping %s: %s", where, problem)
        problems.append(f"{where}: {problem}")
    if not problems:
        problems.append(f"{model_dir.name}: no version folders")
    return None, problems, claimed


def version_entry(model_dir: Path, version: int | None = None, verify_hash: bool = True) -> RepositoryEntry:
    """One version of one model (None: its highest usable version), or RepositoryError saying what is wrong.
    Used to load a second version beside the served one for a model upgrade."""
    if version is None:
        entry, problems, _ = best_version(model_dir, verify_hash)
        if entry is None:
            raise RepositoryError(f"{model_dir.name}: no usable version ({'; '.join(problems)})")
        return entry
    version_dir = model_dir / str(version)
    if not version_dir.is_dir():
        found = [int(p.name) for p in list_version_dirs(model_dir)] if model_dir.is_dir() else []
        raise RepositoryError(f"{model_dir.name} has no version {version} (versions: {sorted(found)})")
    manifest, problem = check_version(version_dir, verify_hash)
    if problem is not None or manifest is None:
        raise RepositoryError(f"{model_dir.name}/{version} is not usable: {problem}")
    return RepositoryEntry(model_dir, manifest.version, manifest)


def _check_tasks(tasks: Iterable[str] | None, model_names: Mapping[str, str]) -> list[str] | None:
    wanted = None if tasks is None else list(dict.fromkeys(tasks))
    invalid = sorted({t for t in [*(wanted or []), *model_names] if not re.match(TASK_NAME_PATTERN, t)})
    if invalid:
        raise RepositoryError(f"invalid task name(s) {invalid}: a task name matches {TASK_NAME_PATTERN}")
    return wanted


def load_repository(
    path: Path | str,
    tasks: Iterable[str] | None = None,
    *,
    model_names: Mapping[str, str] | None = None,
    verify_hash: bool = True,
) -> dict[str, RepositoryEntry]:
    """Per task, the highest usable version in the repository at `path`.

    `tasks`: the tasks that must be served (None: every task found). `model_names`: task → model folder,
    for repositories where several models serve one task (otherwise that is an ambiguity error).
    Raises RepositoryError naming the problems when a wanted task has no usable version.
    """
    root = Path(path)
    model_names = dict(model_names or {})
    wanted = _check_tasks(tasks, model_names)
    if not root.is_dir():
        raise RepositoryError(f"model repository {root} is not a folder")
    chosen: dict[str, list[RepositoryEntry]] = {}
    problems: dict[str, list[str]] = {}
    unclaimed: list[str] = []  # problems of models whose task could not be read
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        pinned_to = [t for t, name in model_names.items() if name == model_dir.name]
        entry, found, claimed = best_version(model_dir, verify_hash)
        if entry is not None and model_names.get(entry.manifest.task, model_dir.name) == model_dir.name:
            chosen.setdefault(entry.manifest.task, []).append(entry)
        for task in claimed | set(pinned_to) or {None}:
            (problems.setdefault(task, []) if task else unclaimed).extend(found)
    result: dict[str, RepositoryEntry] = {}
    for task in wanted if wanted is not None else sorted(set(chosen) | set(problems)):
        entries = chosen.get(task, [])
        if len(entries) > 1:
            names = [e.model_dir.name for e in entries]
            raise RepositoryError(f"task {task!r}: several models serve it ({names}); choose one with model_names")
        if not entries:
            details = problems.get(task, []) + unclaimed
            raise RepositoryError(f"task {task!r}: no usable model version in {root}"
                                  + (f" ({'; '.join(details)})" if details else ""))
        result[task] = entries[0]
    if not result:
        raise RepositoryError(f"model repository {root} holds no usable model" +
                              (f" ({'; '.join(unclaimed)})" if unclaimed else ""))
    for task, entry in result.items():
        log.info("task %s: serving %s version %d", task, entry.model_dir.name, entry.version)
    return result
