"""Prometheus metrics of the gateway: one prefix (`ufo_`), few labels, `*_seconds` histograms (TEI's style).

Every app gets its own `CollectorRegistry` (two apps in one test process must not share counters). Index
sizes are read at scrape time by a collector over the live indexes, so they can never go stale; the
inference backend feeds the batch-size histogram and queue-depth gauge through its hooks.

Label values are bounded: `route` is the route template (`/v1/tasks/{task}/search`, never the raw path),
`task` is a served task or "" (a client sending random task names must not create series).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "ufo"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True, slots=True)
class IndexSample:
    """What the index collector reports for one task."""

    task: str
    items: int
    tombstones: int
    delta: int
    rebuilds: int = 0  # rebuilt snapshots swapped in since start


class IndexCollector(Collector):
    """Index size, delta size and tombstones per task, read from the live indexes at scrape time."""

    def __init__(self, source: Callable[[], Iterable[IndexSample]]) -> None:
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        items = GaugeMetricFamily(f"{PREFIX}_index_items", "Live items in the task's index", labels=["task"])
        dead = GaugeMetricFamily(f"{PREFIX}_index_tombstones", "Deleted or overwritten copies still in the index",
                                 labels=["task"])
        delta = GaugeMetricFamily(f"{PREFIX}_index_delta_items", "Vectors written since the main index was built",
                                  labels=["task"])
        rebuilds = CounterMetricFamily(f"{PREFIX}_index_rebuilds", "Rebuilt index snapshots swapped in",
                                       labels=["task"])
        for sample in self.source():
            items.add_metric([sample.task], sample.items)
            dead.add_metric([sample.task], sample.tombstones)
            delta.add_metric([sample.task], sample.delta)
            rebuilds.add_metric([sample.task], sample.rebuilds)
        yield from (items, dead, delta, rebuilds)


class GatewayMetrics:
    """The gateway's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered",
                                ["route", "task", "status"], registry=r)
        self.request_seconds = Histogram(f"{PREFIX}_http_request_duration_seconds", "HTTP request latency",
                                         ["route", "task", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(f"{PREFIX}_inference_batch_size", "Images per model run (dynamic batcher)",
                                    ["task"], buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram(f"{PREFIX}_inference_batch_duration_seconds", "Model run time per batch",
                                       ["task"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_inference_queue_depth", "Images waiting for a model run",
                                 ["task"], registry=r)
        self.embed_images = Histogram(f"{PREFIX}_embed_images", "Images per embedding call from the gateway",
                                      ["task"], buckets=BATCH_BUCKETS, registry=r)
        self.search_seconds = Histogram(f"{PREFIX}_search_duration_seconds", "Index search latency (coalesced)",
                                        ["task"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_info = Gauge(f"{PREFIX}_model_info", "The model serving each task (value 1)",
                                ["task", "model_name", "version", "embedding_dim"], registry=r)
        self.recall = Gauge(f"{PREFIX}_index_recall_at_k", "Recall canary: recall@k of sampled live queries vs "
                            "exact search", ["task", "k"], registry=r)
        self.ready = Gauge(f"{PREFIX}_ready", "1 when the last readiness check passed", registry=r)
        self.upgrades = Counter(f"{PREFIX}_model_upgrades", "Model upgrades: done, failed or refused here, or "
                                "adopted from another replica", ["task", "outcome"], registry=r)
        self._model_labels: dict[str, tuple[str, ...]] = {}

    # -- hooks handed to the inference backend (called from its worker threads) ------------------

    def observe_batch(self, task: str, images: int, seconds: float) -> None:
        self.batch_size.labels(task).observe(images)
        self.batch_seconds.labels(task).observe(seconds)

    def set_queue_depth(self, task: str, depth: int) -> None:
        self.queue_depth.labels(task).set(depth)

    # -- gateway-side observations --------------------------------------------------------------

    def observe_request(self, route: str, task: str, status: int, seconds: float) -> None:
        self.requests.labels(route, task, str(status)).inc()
        self.request_seconds.labels(route, task, str(status)).observe(seconds)

    def set_model(self, task: str, model_name: str, version: int, embedding_dim: int) -> None:
        """The model serving `task` now (after an upgrade the previous one's series is removed)."""
        labels = (task, model_name, str(version), str(embedding_dim))
        previous = self._model_labels.get(task)
        if previous is not None and previous != labels:
            self.model_info.remove(*previous)
        self._model_labels[task] = labels
        self.model_info.labels(*labels).set(1)

    def set_recall(self, task: str, k: int, recall: float) -> None:
        """The recall canary's latest measurement (called from its thread)."""
        self.recall.labels(task, str(k)).set(recall)

    def watch_indexes(self, source: Callable[[], Iterable[IndexSample]]) -> IndexCollector:
        """Register a collector that reads index sizes from `source` at every scrape."""
        collector = IndexCollector(source)
        self.registry.register(collector)
        return collector

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
