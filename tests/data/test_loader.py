"""The streaming path (LoaderStream): the cache's batches, worker-count-independent augmentation, exact resume
despite prefetching, clear errors for bad files, and a short training run on it."""

import multiprocessing
from pathlib import Path

import pytest
import torch

from tests.data.trees import write_image
from ufo.data.loader import LoaderStream, make_task_stream
from ufo.data.sampling import TaskStream
from ufo.data.types import DataError, Sample
from ufo.tasks import TASK_SPECS
from ufo.train.config import TrainConfig, get_train_config

# Identities with 1 or 2 images repeat within a P x K batch (drawn with replacement), so batches hold duplicates.
LABELS = [0] * 5 + [1] * 2 + [2] * 4 + [3] * 1 + [4] * 3 + [5] * 2
SIZE = (12, 8)
PERSON = TASK_SPECS["person"].augment


def _samples(tmp_path: Path) -> list[Sample]:
    return [Sample(str(write_image(tmp_path / f"{i}.png", seed=i)), label) for i, label in enumerate(LABELS)]


def _draw(stream, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [next(stream) for _ in range(n)]


def _assert_same_batches(got, want) -> None:
    assert len(got) == len(want)
    for (images, labels), (want_images, want_labels) in zip(got, want, strict=True):
        assert torch.equal(labels, want_labels)
        assert torch.equal(images, want_images)


@pytest.fixture
def streams():
    """Streams made by a test; their workers are stopped afterwards."""
    made: list[LoaderStream] = []

    def make(*args, **kwargs) -> LoaderStream:
        made.append(LoaderStream(*args, **kwargs))
        return made[-1]

    yield make
    for stream in made:
        stream.close()


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("k", [3, None])
def test_stream_gives_the_cached_batches(tmp_path, streams, workers, k):
    samples = _samples(tmp_path)
    cached = TaskStream(samples, SIZE, batch_size=6, k=k, seed=11)
    stream = streams(samples, SIZE, batch_size=6, k=k, seed=11, workers=workers)
    got = _draw(stream, 5)
    _assert_same_batches(got, _draw(cached, 5))  # same identities, labels and (unaugmented) pixels
    assert got[0][0].shape == (6, 3, *SIZE) and got[0][0].dtype == torch.float32
    assert got[0][1].dtype == torch.int64 and stream.batch_size == 6
    # the saved sampler is the one after the 5 batches consumed, however far the workers have read ahead
    assert stream.state_dict() == {"sampler": cached.sampler.state_dict(), "batches": 5}


def test_augmentation_depends_on_the_batch_not_the_worker_count(tmp_path, streams):
    samples = _samples(tmp_path)
    in_process = _draw(streams(samples, SIZE, batch_size=6, k=3, augment=PERSON, seed=3, workers=0), 4)
    two_workers = _draw(streams(samples, SIZE, batch_size=6, k=3, augment=PERSON, seed=3, workers=2), 4)
    _assert_same_batches(two_workers, in_process)
    plain = _draw(TaskStream(samples, SIZE, batch_size=6, k=3, seed=3), 4)
    for (images, labels), (plain_images, plain_labels) in zip(in_process, plain, strict=True):
        assert torch.equal(labels, plain_labels)  # augmentation draws from its own generator
        assert not torch.equal(images, plain_images)
    assert not torch.equal(in_process[0][0], in_process[1][0])


@pytest.mark.parametrize("resumed_workers", [2, 0])
def test_resume_continues_with_the_uninterrupted_batches(tmp_path, streams, resumed_workers):
    samples = _samples(tmp_path)
    make = lambda workers: streams(samples, SIZE, batch_size=6, k=3, augment=PERSON, seed=5, workers=workers)
    stream = make(2)
    _draw(stream, 3)  # the workers have prefetched batches past these
    torch.save(stream.state_dict(), tmp_path / "state.pt")
    want = _draw(stream, 4)
    resumed = make(resumed_workers)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt"))
    _assert_same_batches(_draw(resumed, 4), want)
    assert resumed.batches == 7
    # rewinding a running stream: its persistent workers are kept, their prefetched batches dropped
    stream.load_state_dict(torch.load(tmp_path / "state.pt"))
    _assert_same_batches(_draw(stream, 4), want)


def test_a_cache_state_resumes_the_same_batches_on_the_stream(tmp_path, streams):
    samples = _samples(tmp_path)
    cached = TaskStream(samples, SIZE, batch_size=6, k=3, seed=9)
    _draw(cached, 2)
    stream = streams(samples, SIZE, batch_size=6, k=3, seed=9, workers=2)
    stream.load_state_dict(cached.state_dict())
    _assert_same_batches(_draw(stream, 3), _draw(cached, 3))


@pytest.mark.timeout(120)  # a worker that hangs on a bad file fails here instead of stalling the suite
@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_bad_image_is_a_data_error_naming_the_file(tmp_path, streams, workers, damage):
    samples = _samples(tmp_path)
    bad = Path(samples[7].path)
    if damage == "corrupt":
        bad.write_bytes(b"not a png")
    else:
        bad.unlink()
    stream = streams(samples, SIZE, batch_size=len(samples), seed=0, workers=workers)  # every batch reads it
    for _ in range(2):  # nothing was consumed: asking again re-reads the same batch and fails the same way
        with pytest.raises(DataError, match=f"{'unreadable' if damage == 'corrupt' else 'missing'} image {bad}") \
                as caught:
            next(stream)
        assert "Traceback" not in str(caught.value)  # the file's message, not the worker's traceback
    assert stream.batches == 0


def test_close_stops_the_worker_processes(tmp_path):
    before = set(multiprocessing.active_children())
    stream = LoaderStream(_samples(tmp_path), SIZE, batch_size=6, k=3, workers=2)
    next(stream)
    assert len(set(multiprocessing.active_children()) - before) == 2
    stream.close()
    assert not set(multiprocessing.active_children()) - before


def test_the_factory_and_the_config_name_bad_choices(tmp_path):
    samples = _samples(tmp_path)
    assert isinstance(make_task_stream("cache", samples, SIZE, 6, k=3), TaskStream)
    stream = make_task_stream("stream", samples, SIZE, 6, k=3, workers=0)
    assert isinstance(stream, LoaderStream) and stream.workers == 0
    with pytest.raises(ValueError, match="'disk'"):
        make_task_stream("disk", samples, SIZE, 6)
    with pytest.raises(ValueError, match="data_loader must be one of cache, stream, got 'disk'"):
        TrainConfig(data_loader="disk")
    with pytest.raises(ValueError, match="loader_workers must be an integer >= 0, got -1"):
        get_train_config("demo").with_overrides(loader_workers=-1)
    with pytest.raises(ValueError, match="workers must be >= 0"):
        LoaderStream(samples, SIZE, 6, workers=-1)


def test_ufo_train_passes_the_loader_options(monkeypatch):
    from ufo.train import run
    from ufo_cli.main import build_parser

    seen = {}

    def fake_run_training(cfg, data_root, out_dir, resume=False, evaluate=True):
        seen["cfg"] = cfg
        return {"steps": 0, "train_seconds": 0.0, "checkpoint": "none"}

    monkeypatch.setattr(run, "run_training", fake_run_training)
    args = build_parser().parse_args(["train", "--data-loader", "stream", "--loader-workers", "0"])
    assert run.cli_train(args) == 0
    assert (seen["cfg"].data_loader, seen["cfg"].loader_workers) == ("stream", 0)
    run.cli_train(build_parser().parse_args(["train"]))
    assert (seen["cfg"].data_loader, seen["cfg"].loader_workers) == ("cache", 2)  # the preset's
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data-loader", "disk"])


def test_training_on_the_stream_matches_the_cache_and_resumes_exactly(tiny_demo, tmp_path):
    from ufo.train.run import load_data
    from ufo.train.trainer import Trainer

    tasks = ("person", "product")
    cfg = get_train_config("demo").with_overrides(steps=3, batch_per_task=8, checkpoint_every=1, tasks=tasks,
                                                  augment=False, data_loader="stream", loader_workers=1)
    data = load_data(tiny_demo, tasks, cfg.val_fraction, cfg.seed)
    straight = Trainer(cfg, data, tmp_path / "a")
    assert all(isinstance(s, LoaderStream) for s in straight.streams.values())
    losses = straight.fit().losses
    cached = Trainer(cfg.with_overrides(data_loader="cache"), data, tmp_path / "c").fit().losses
    assert losses == pytest.approx(cached, rel=1e-6, abs=1e-6)  # same batches, same model: same losses
    first = Trainer(cfg, data, tmp_path / "b")
    first.fit(until=1)
    assert torch.load(first.checkpoint_path, weights_only=False)["streams"]["person"]["batches"] == 1
    resumed = Trainer(cfg, data, tmp_path / "b")
    resumed.resume()
    assert resumed.fit().losses == pytest.approx(losses[1:], rel=1e-6, abs=1e-6)
    for trainer in (straight, first, resumed):
        for stream in trainer.streams.values():
            stream.close()
