"""The whole science path on a tiny real run: train -> baselines -> search -> trim -> report -> export ->
verify. Asserts the artifacts' contracts, not the (meaningless at this size) accuracy."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model_store.verify import verify_repository
from ufo.export import export_run
from ufo.model.config import SubnetConfig
from ufo.model.static import extract_subnet
from ufo.pipeline import run_pipeline
from ufo.search.evolution import EvolutionSettings
from ufo.search.recalibrate import recalibrate_bn, recalibration_batches
from ufo.search.run import load_search_inputs
from ufo.search.trim import load_subnet

TINY = {"steps": 2, "batch_per_task": 8, "checkpoint_every": 1}


def tiny_pipeline(data, root, run="run", jobs=1, seed=0, compare_runs=()):
    return run_pipeline(
        "demo", data, root / run, root / "docs", ("face", "product"), params_ratio=0.7, flops_ratio=0.5,
        settings=EvolutionSettings(population=4, generations=2, seed=seed),
        train_overrides={**TINY, "seed": seed}, finetune_steps=2, jobs=jobs, compare_runs=compare_runs,
    )


@pytest.fixture(scope="module")
def tiny_run(tiny_demo, tmp_path_factory):
    """Two worker processes (the default on 2 cores): trainings and searches run in spawned workers."""
    root = tmp_path_factory.mktemp("pipeline")
    return root, tiny_pipeline(tiny_demo, root, jobs=2)


def test_pipeline_writes_every_stage_and_a_report(tiny_run):
    root, summary = tiny_run
    stages = summary["stage_seconds"]
    for name in ("train_supernet", "train_baseline_face", "search_face", "trim_product", "finetune_face", "report"):
        assert name in stages
    report = json.loads((root / "docs" / "results.json").read_text())
    md = (root / "docs" / "results.md").read_text()
    for task in ("face", "product"):
        entry = report["tasks"][task]
        assert set(entry["models"]) == {"single_task", "supernet", "trimmed", "trimmed_finetuned"}
        assert entry["trimmed_vs_supernet"]["params_ratio"] <= 0.7
        assert entry["trimmed_vs_supernet"]["flops_ratio"] <= 0.5
        for row in entry["models"].values():
            assert row["latency_ms"]["batch1"] > 0 and row["latency_ms"]["batch32"] > 0
        assert f"**{task}**" in md
    assert (root / "docs" / "img" / "results.png").stat().st_size > 1000
    assert "REAL" in md  # the data notes say which parts are real
    search = json.loads((root / "run" / "search" / "face" / "search.json").read_text())
    assert len(search["history"]) == 8 and search["pareto"]["params"]
    assert (root / "run" / "search" / "face" / "pareto.png").exists()


def test_rerunning_skips_finished_stages(tiny_run, tiny_demo):
    root, _ = tiny_run
    assert set(tiny_pipeline(tiny_demo, root, jobs=2)["stage_seconds"]) == {"report"}


def test_a_run_is_reproducible_given_its_seed_in_or_out_of_worker_processes(tiny_run, tiny_demo):
    """Same seed, one torch thread: the in-process run (jobs=1) and the worker run (jobs=2) train bit-identical
    weights; another seed does not. Its report then shows both seeds side by side."""
    root, _ = tiny_run
    tiny_pipeline(tiny_demo, root, run="again", jobs=1)
    tiny_pipeline(tiny_demo, root, run="seed1", jobs=1, seed=1, compare_runs=(root / "run",))

    def weights(run, stage="supernet"):
        return torch.load(root / run / stage / "checkpoint.pt", weights_only=False)["model"]

    for stage in ("supernet", "baselines/face"):
        first, again, other = weights("run", stage), weights("again", stage), weights("seed1", stage)
        assert all(torch.equal(first[k], again[k]) for k in first)
        assert not all(torch.equal(first[k], other[k]) for k in first)
    report = json.loads((root / "docs" / "results.json").read_text())
    seeds = report["tasks"]["face"]["seeds"]
    assert [s["seed"] for s in seeds] == [1, 0]
    assert seeds[1]["run"] == str(root / "run") and set(seeds[1]["metrics"]) >= {"single_task", "trimmed"}
    md = (root / "docs" / "results.md").read_text()
    assert "## Over seeds" in md and "| face | trimmed subnet (no fine-tune) |" in md


def test_report_puts_classical_baselines_beside_the_models(tiny_run):
    root, _ = tiny_run
    report = json.loads((root / "docs" / "results.json").read_text())
    face = report["tasks"]["face"]
    assert set(face["classical"]) == {"pixels", "fisherfaces"}
    for metrics in face["classical"].values():
        assert 0.0 <= metrics["gallery_mAP"] <= 1.0 and 0.0 <= metrics["verification_accuracy"] <= 1.0
    assert "gallery_mAP" in face["models"]["trimmed"]["metrics"]
    assert "| Fisherfaces (PCA to 95% variance + LDA) |" in (root / "docs" / "results.md").read_text()


def test_trimmed_subnet_equals_the_recalibrated_supernet_at_its_config(tiny_run, tiny_demo):
    root, _ = tiny_run
    subnet, meta = load_subnet(root / "run" / "subnets" / "product.pt")
    search = json.loads((root / "run" / "search" / "product" / "search.json").read_text())
    cfg = SubnetConfig.from_dict(search["best"]["config"])
    model, data = load_search_inputs(root / "run" / "supernet" / "checkpoint.pt", "product", tiny_demo)
    recalibrate_bn(model, cfg, "product", recalibration_batches(data.train, model.arch.img_size, seed=0))
    x = torch.randn(3, 3, *model.arch.img_size)
    with torch.no_grad():
        assert (model.embed(x, "product", cfg) - subnet(x)).abs().max() < 1e-5
        assert (extract_subnet(model, cfg, "product")(x) - subnet(x)).abs().max() < 1e-5
    assert meta["source_checkpoint_hash"] == search["checkpoint_hash"] and meta["finetuned"] is False


def test_export_of_the_trimmed_subnets_verifies(tiny_run, tiny_demo, monkeypatch):
    root, _ = tiny_run
    monkeypatch.chdir(root)  # export reads docs/results.json relative to the working folder
    repo = root / "repository"
    written = export_run(root / "run", repo, tiny_demo, ("face", "product"), kind="cpu")
    assert [p.name for p in written] == ["1", "1"]
    assert verify_repository(repo) == []
    manifest = json.loads((repo / "ufo_face" / "1" / "manifest.json").read_text())
    assert -1.0 <= manifest["verification_threshold"] <= 1.0
    assert manifest["metrics"]["test"]["verification_accuracy"] >= 0


def _spawned_children(pid):
    """PIDs of `pid`'s multiprocessing spawn workers, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _running(pid):
    """Alive and not a zombie (an orphan's exit is reaped by whatever init this machine runs, maybe late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_do_not_outlive_a_killed_pipeline(tmp_path):
    started = [tmp_path / "a", tmp_path / "b"]
    lanes = ", ".join(f"[Stage('touch', False, Path({str(f)!r}).touch), Stage('sleep', False, time.sleep, (300,))]"
                      for f in started)
    script = ("import time\nfrom pathlib import Path\nfrom ufo.pipeline import Stage, run_lanes\n"
              f"run_lanes([{lanes}], 2)")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not all(f.exists() for f in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _spawned_children(proc.pid)
        assert len(workers) == 2, "the two worker processes never started their stages"
    finally:
        proc.kill()  # SIGKILL: the pool gets no chance to stop its workers
        proc.wait()
    deadline = time.monotonic() + 30
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [w for w in workers if _running(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "workers kept running after their pipeline was killed"
