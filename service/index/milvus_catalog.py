"""The Milvus engine's catalog: one collection per task and model version, one alias per task naming the live one.

`<prefix>_<task>__<version-slug>` holds a version's vectors; the alias `<prefix>_<task>` names the live
collection. A model upgrade fills the new collection beside the live one, then `promote` moves the alias in
one call (`alter_alias`): each search goes to exactly one collection, so an answer never mixes versions.
The collection it named before is dropped `retire_after_s` later (searches in flight and other replicas have
moved to the alias's new collection by then); one left by a stopped gateway stays listed by `retired`.
The model version, dimension, change-log offset and tuned HNSW `ef` live in the collection's properties, so a
gateway that restarts (or a new replica) reopens the live collection, searches it as tuned and catches up from
the store after `offset`. The index type is chosen by size when a collection is made: exact (FLAT) below
`index.flat_below` items, as the FAISS engine; HNSW above (GPU_CAGRA on GPU query nodes), its `ef` tuned once
filled (`tune`, `milvus_tune.tune_ef`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from pathlib import Path

from service.index.milvus_engine import CONSISTENCY, ID_MAX_LENGTH, MilvusIndex, guarded
from service.index.milvus_settings import MilvusSettings, is_lite
from service.index.milvus_tune import tune_ef
from service.index.tune import OperatingPoint

log = logging.getLogger(__name__)
PROP_VERSION, PROP_DIM, PROP_OFFSET = "ufo.model_version", "ufo.dim", "ufo.offset"
PROP_EF, PROP_RECALL, PROP_TUNED_COUNT = "ufo.ef", "ufo.recall", "ufo.tuned_count"  # HNSW ef, its recall@10, at size


def index_type_for(n_expected: int, flat_below: int, *, gpu: bool = False) -> str:
    """Exact (FLAT) below `flat_below` items, as the FAISS engine; HNSW above (GPU_CAGRA on GPU query nodes)."""
    if n_expected < flat_below:
        return "FLAT"
    return "GPU_CAGRA" if gpu else "HNSW"


def index_params(client, index_type: str):  # noqa: ANN001, ANN201
    """The vector field's index of this type, inner product."""
    params = client.prepare_index_params()
    if index_type == "FLAT":
        params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
    elif index_type == "GPU_CAGRA":
        params.add_index(field_name="vector", index_type="GPU_CAGRA", metric_type="IP",
                         params={"intermediate_graph_degree": 64, "graph_degree": 32})
    else:
        params.add_index(field_name="vector", index_type="HNSW", metric_type="IP",
                         params={"M": 32, "efConstruction": 200})
    return params


class MilvusCatalog:
    """`EngineCatalog` over a Milvus server or a Milvus Lite file (see module docstring)."""

    name = "milvus"

    def __init__(self, settings: MilvusSettings, *, flat_below: int = 50_000, recall_target: float = 0.95,
                 exact_scan_max_items: int = 10_000):
        from pymilvus import MilvusClient

        self.settings = settings
        self.flat_below = flat_below
        self.recall_target = recall_target
        self.exact_scan_max_items = exact_scan_max_items  # tuning's truth: a scan up to this size, else ef 8192
        if is_lite(settings.uri):
            Path(settings.uri).parent.mkdir(parents=True, exist_ok=True)
        self.client = self._call("connect", lambda: MilvusClient(
            settings.uri, token=settings.token or "", db_name=settings.db_name, timeout=settings.timeout_s))
        self._live: dict[str, MilvusIndex] = {}
        self._retiring: dict[str, threading.Timer] = {}  # collection → its pending drop

    def _call(self, what, call):  # noqa: ANN001, ANN202
        return guarded(call, what, self.settings.retry_after_s)

    def alias(self, task: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_]+", task):
            raise ValueError(f"task names for the milvus engine are letters, digits and _, got {task!r}")
        return f"{self.settings.collection_prefix}_{task}"

    def collection(self, task: str, model_version: str, generation: str = "") -> str:
        """The collection of a task's model version; `generation` names a rebuild's (the same version again)."""
        readable = re.sub(r"[^A-Za-z0-9_]", "_", model_version)[:64]
        digest = hashlib.sha256(model_version.encode()).hexdigest()[:8]
        again = f"_{generation}" if generation else ""
        return f"{self.alias(task)}__{readable}_{digest}{again}"

    # -- the catalog ---------------------------------------------------------------------------

    def open(self, task: str) -> MilvusIndex | None:
        if task in self._live:
            return self._live[task]
        name = self.aliased(task)
        if name is None:
            return None
        index = self._index_of(name)
        self._live[task] = index
        return index

    def aliased(self, task: str) -> str | None:
        """The collection the task's alias names now, read from Milvus (another process may have moved it)."""
        alias = self.alias(task)
        aliases = self._call("list aliases", lambda: self.client.list_aliases()).get("aliases", [])
        if alias not in aliases:
            return None
        return self._call("describe alias", lambda: self.client.describe_alias(alias))["collection_name"]

    def live_properties(self, task: str, serving: str | None = None) -> dict[str, str] | None:
        """The properties (`ufo.model_version`, `ufo.dim`, `ufo.offset`) and `name` of the collection the alias
        names now, when it is not `serving` (None: it is, or there is no alias). One call when nothing moved."""
        name = self.aliased(task)
        if name is None or name == serving:
            return None
        props = self._call("describe", lambda: self.client.describe_collection(name)).get("properties", {})
        return {**props, "name": name}

    def reopen(self, task: str) -> MilvusIndex | None:
        """The collection the alias names now, opened afresh (another replica promoted another version)."""
        self._live.pop(task, None)
        return self.open(task)

    def _index_of(self, name: str) -> MilvusIndex:
        props = self._call("describe", lambda: self.client.describe_collection(name)).get("properties", {})
        described = self._call("describe index", lambda: self.client.describe_index(name, "vector")) or {}
        self._call("load", lambda: self.client.load_collection(name))
        ef, recall, count = props.get(PROP_EF), props.get(PROP_RECALL), props.get(PROP_TUNED_COUNT)
        return MilvusIndex(self.client, name, int(props[PROP_DIM]), props[PROP_VERSION],
                           offset=int(props.get(PROP_OFFSET, 0)), retry_after_s=self.settings.retry_after_s,
                           index_type=described.get("index_type", "FLAT"), search_ef=int(ef) if ef else None,
                           tuned_recall=float(recall) if recall else None, tuned_count=int(count) if count else None)

    def create(self, task: str, model_version: str, dim: int, *, n_expected: int = 0,
               generation: str = "") -> MilvusIndex:
        """A new empty collection for this version (one left by a failed upgrade is dropped first), indexed for
        `n_expected` items; `generation` makes the live version's collection again (a rebuild)."""
        from pymilvus import DataType

        if dim <= 0 or not model_version or not re.fullmatch(r"[A-Za-z0-9]*", generation):
            raise ValueError(f"need a positive dim, a model version and an alphanumeric generation, got {dim} / "
                             f"{model_version!r} / {generation!r}")
        name = self.collection(task, model_version, generation)
        live = self._live.get(task)
        if (live is not None and live.collection == name) or self.aliased(task) == name:  # (another replica's)
            raise ValueError(f"{model_version!r} is already the live version of task {task!r}")
        if (pending := self._retiring.pop(name, None)) is not None:  # made again (a roll-back): not retired
            pending.cancel()
        if self._call("has collection", lambda: self.client.has_collection(name)):
            self._call("drop", lambda: self.client.drop_collection(name))
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_LENGTH)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("metadata", DataType.JSON)
        props = {PROP_VERSION: model_version, PROP_DIM: str(dim), PROP_OFFSET: "0"}
        index_type = index_type_for(n_expected, self.flat_below)
        self._call("create", lambda: self.client.create_collection(
            name, schema=schema, index_params=index_params(self.client, index_type), consistency_level=CONSISTENCY,
            properties=props, num_shards=self.settings.shards))
        if self.settings.replicas > 1:  # made loaded with one replica: load it again with the configured number
            self._call("release", lambda: self.client.release_collection(name))
            self._call("load", lambda: self.client.load_collection(name, replica_number=self.settings.replicas))
        return MilvusIndex(self.client, name, dim, model_version, retry_after_s=self.settings.retry_after_s,
                           index_type=index_type)

    def settle_lite(self, collection: str) -> None:
        """Milvus Lite merges flushed segments and indexes the merged ones in a background thread after
        `describe_index` already reports done (searches meanwhile scan unindexed segments: exact, so an ef
        tuned then would be too small). Wait for it through Lite's in-process objects (no client call does);
        a Milvus server needs nothing, and another Lite release without them is tuned on what is indexed."""
        if not is_lite(self.settings.uri):
            return
        try:
            from milvus_lite.server_manager import server_manager_instance

            for _server, db, _port in list(server_manager_instance._servers.values()):
                if db.has_collection(collection):
                    db.get_collection(collection)._wait_for_bg()
        except (ImportError, AttributeError) as exc:
            log.debug("cannot wait for Milvus Lite's background indexing: %s", exc)

    def tune(self, index: MilvusIndex) -> OperatingPoint | None:
        """Once a new collection is filled: wait for Milvus to index it, tune its HNSW `ef` to the recall target
        and keep it in the collection's properties (None for FLAT: exact as it is)."""
        if index.index_type != "HNSW":
            return None
        self._call("flush", lambda: self.client.flush(index.collection))
        deadline = time.monotonic() + self.settings.index_wait_s
        while time.monotonic() < deadline:  # segments still being indexed would be searched exhaustively
            described = self._call("describe index", lambda: self.client.describe_index(index.collection, "vector"))
            if not described or int(described.get("pending_index_rows", 0) or 0) == 0:
                break
            time.sleep(1.0)
        else:
            log.warning("%s: still indexing after %.0f s; tuning on what is indexed", index.collection,
                        self.settings.index_wait_s)
        self.settle_lite(index.collection)
        count = len(index)
        point = tune_ef(index, self.recall_target, self.exact_scan_max_items)
        if point is not None:
            index.tuned_recall, index.tuned_count = point.recall, count
            self._call("set ef", lambda: self.client.alter_collection_properties(index.collection, properties={
                PROP_EF: str(index.search_ef), PROP_RECALL: f"{point.recall:.6f}", PROP_TUNED_COUNT: str(count)}))
        return point

    def promote(self, task: str, engine: MilvusIndex) -> None:
        """Point the task's alias at `engine`'s collection: one call, searches switch atomically."""
        if not isinstance(engine, MilvusIndex):
            raise TypeError(f"the milvus catalog promotes MilvusIndex, got {type(engine).__name__}")
        self._persist_offset(engine)
        alias = self.alias(task)
        aliases = self._call("list aliases", lambda: self.client.list_aliases()).get("aliases", [])
        if alias in aliases:
            before = self._call("describe alias", lambda: self.client.describe_alias(alias))["collection_name"]
            self._call("alter alias", lambda: self.client.alter_alias(engine.collection, alias))
            if before is not None and before != engine.collection:
                self._retire_later(before)
        else:
            self._call("create alias", lambda: self.client.create_alias(engine.collection, alias))
        self._live[task] = engine

    def drop(self, collection: str) -> None:
        """Drop a collection this catalog made and never promoted (a rebuild that did not finish)."""
        self._call("drop", lambda: self.client.drop_collection(collection))

    def _retire_later(self, collection: str) -> None:
        timer = threading.Timer(self.settings.retire_after_s, self._drop_retired, [collection])
        timer.daemon = True
        self._retiring[collection] = timer
        timer.start()

    def _drop_retired(self, collection: str) -> None:
        """Drop a collection no alias names any more (a background timer; a failure is logged, not raised)."""
        self._retiring.pop(collection, None)
        try:
            if collection in self._call("list aliases", lambda: self.client.list_aliases(collection)).get(
                    "aliases", []):
                return  # promoted again meanwhile (a roll-back)
            self._call("drop", lambda: self.client.drop_collection(collection))
            log.info("dropped retired collection %s", collection)
        except Exception as exc:
            log.warning("could not drop retired collection %s: %s", collection, exc)

    def retired(self, task: str) -> list[str]:
        """The task's collections the alias no longer names (drop them once no request can still use them)."""
        live = self._live.get(task) or self.open(task)
        prefix = self.alias(task) + "__"
        names = self._call("list", lambda: self.client.list_collections())
        return [n for n in names if n.startswith(prefix) and (live is None or n != live.collection)]

    def checkpoint(self, task: str) -> None:
        index = self._live.get(task)
        if index is not None:
            self._persist_offset(index)

    def _persist_offset(self, index: MilvusIndex) -> None:
        self._call("set offset", lambda: self.client.alter_collection_properties(
            index.collection, properties={PROP_OFFSET: str(index.offset)}))

    def close(self) -> None:
        for timer in list(self._retiring.values()):  # left for `retired` to list, never dropped half-way
            timer.cancel()
        self._retiring.clear()
        try:
            for task in list(self._live):
                self.checkpoint(task)
        finally:
            self._live.clear()
            self.client.close()
