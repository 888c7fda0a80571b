"""Service settings: one pydantic-settings class. Sources, highest first: init arguments, environment
variables (prefix UFO_, nested with __, e.g. UFO_LIMITS__MAX_K=100), the YAML file named by UFO_CONFIG_FILE,
defaults. The defaults need no external service: embedded ONNX Runtime, SQLite, CPU FAISS, local files."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from service.index.engine import ENGINES
from service.index.milvus_settings import MilvusSettings


class Limits(BaseModel):
    max_body_bytes: int = 20 * 1024 * 1024  # 413 above this
    max_images_per_request: int = 32
    max_pixels: int = 40_000_000  # per image, checked from the header before the full decode
    max_k: int = 1000
    max_metadata_bytes: int = 4096
    max_items_per_request: int = 256
    request_timeout_s: float = 30.0


class RateLimitSettings(BaseModel):
    """Per-API-key token bucket (service/api/ratelimit.py), kept in each gateway process: N replicas allow a key
    up to N × the rate. 429 with Retry-After past it. Off when `requests_per_s` is 0."""

    requests_per_s: float = Field(0.0, ge=0.0)
    burst: int = Field(20, ge=1)  # requests a key may make at once after being idle


class TritonSettings(BaseModel):
    # host:port (gRPC) or host:port of the HTTP endpoint; several comma-separated, each name resolved to every
    # address it has (a headless Service: every pod) and called round-robin (service/inference/endpoints.py)
    url: str = "127.0.0.1:8001"
    resolve_interval_s: float = Field(30.0, ge=0.0)  # re-resolve the names this often (0: only at start)
    protocol: Literal["grpc", "http"] = "grpc"
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.1
    load_models: bool = False  # ask an explicit-model-control server to load the models it lacks


class EmbeddedSettings(BaseModel):
    sessions_per_model: int = 2  # instance parallelism beats intra-op threads on small models (docs/benchmarks.md)
    threads_per_session: int = 1
    max_batch: int = 32
    max_delay_ms: float = 2.0
    max_queue: int = 1024


class FaissGpuSettings(BaseModel):
    """FAISS on GPUs: used only where the faiss build sees a GPU (the faiss-gpu-cu12 image, docs/gpu.md)."""

    enabled: bool = True  # false keeps every index on the CPU even where a GPU is visible
    # scratch memory per GPU (StandardGpuResources.setTempMemory); -1 keeps FAISS's default (~18% of the card)
    temp_memory_mb: int = Field(default=512, ge=-1)
    # float16 IVF-PQ lookup tables / IVF-Flat storage: faster and half the memory, but it moves scores; the
    # rebuild's recall tuning still has to reach recall_target. Off until measured on the card (docs/gpu.md).
    float16: bool = False


class IndexSettings(BaseModel):
    # "faiss": in-memory indexes + local snapshots (one machine); "milvus": a Milvus server or a Milvus Lite file
    # (UFO_MILVUS__URI), service/index/engine.py and docs/scale.md
    engine: str = "faiss"
    flat_below: int = 50_000  # exact search below this many items
    ann_factory: str = "IVF{nlist},Flat"  # FAISS index_factory string above it ({nlist} filled from the size)
    recall_target: float = 0.95  # recall@10 the tuned operating point must reach on held-out queries
    rebuild_delta_items: int = 20_000  # trigger: items written since the last build
    rebuild_tombstone_ratio: float = 0.2  # trigger: deleted/overwritten share of the main index
    rebuild_interval_s: float = 0.0  # trigger: schedule (0 = off)
    canary_interval_s: float = 60.0  # recall canary period (0 = off)
    coalesce_max_batch: int = 64
    # 0 = work-conserving: a lone query runs at once; under load, queries that arrive while a batch runs
    # form the next batch anyway. >0 lingers that long for company (measured: ~2 ms added to every lone search)
    coalesce_max_delay_ms: float = 0.0
    # Background rebuilds (service/worker): index choice, tuning, snapshots, the follower and the canary.
    compressed_above: int = 5_000_000  # IVF-PQ + exact re-ranking above this many items (memory)
    compressed_factory: str = "IVF{nlist},PQ{pq}x4fs,RFlat"  # {pq}: dim/4 sub-quantizers
    tune_queries: int = 300  # held-out queries the operating point is tuned on (recall@10 vs exact)
    keep_snapshots: int = 3  # snapshot versions kept per task in data_dir/snapshots/<task>/
    # change-log entries kept before the latest snapshot's offset (older ones are trimmed once it is announced;
    # a reader further behind rebuilds from the items); -1 keeps the whole log
    log_retain: int = 100_000
    poll_interval_s: float = 1.0  # follower: change-log catch-up and latest-snapshot check period
    min_rebuild_gap_s: float = 30.0  # follower: no new trigger this soon after its last request
    canary_queries: int = 16  # live queries re-run exactly per canary round
    canary_k: int = 10
    # Milvus: exact truth (ef tuning, the canary) is a scan of the collection, up to this many items; above it, a
    # search at ef 8192. A scan is slow (Milvus Lite: 10k x 128 in ~4 s, 100k in ~2 min): HNSW collections start
    # at flat_below (50k), so by default their truth is the wide search
    exact_scan_max_items: int = Field(default=10_000, ge=0)
    gpu: FaissGpuSettings = FaissGpuSettings()  # UFO_INDEX__GPU__TEMP_MEMORY_MB, ...

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, engine: str) -> str:
        if engine not in ENGINES:
            raise ValueError(f"UFO_INDEX__ENGINE={engine!r} is not an index engine: use one of {', '.join(ENGINES)}")
        return engine


class WorkerSettings(BaseModel):
    """The rebuild job queue (`ufo worker`). Without a Redis URL the jobs run in-process in a thread."""

    queue_url: str | None = None  # redis://host:port/db; None: the store's URL when it is Redis, else in-process
    namespace: str = "ufo"  # key prefix of the queue, job states and snapshot announcements
    claim_idle_s: float = 30.0  # a running job silent this long (its worker died) is claimed by another worker
    heartbeat_s: float = 5.0  # a running job's worker renews its claim this often (< claim_idle_s)
    max_attempts: int = 3  # deliveries before a job is marked failed for good
    block_s: float = 2.0  # XREADGROUP wait per poll
    # touched by `ufo worker` every loop round and claim renewal: its liveness probe checks the file's age
    heartbeat_file: Path | None = None
    images_dir: Path | None = None  # kept source images; None: data_dir/images
    # Without Redis the gateway runs the rebuild jobs itself: in a reniced child process (its own GIL, so the
    # searches do not wait for the job's Python work) or in a thread of its own process
    local_jobs: Literal["process", "thread"] = "process"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UFO_", env_nested_delimiter="__", extra="forbid")

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8080
    repository: Path = Path("model_store/repository")  # Triton model repository (manifests are read here)
    tasks: list[str] | None = None  # default: every task with a model in the repository
    backend: Literal["embedded", "triton"] = "embedded"
    embedded: EmbeddedSettings = EmbeddedSettings()
    triton: TritonSettings = TritonSettings()
    store_url: str = "sqlite:///var/ufo/store"  # or redis://host:port/db (distributed mode)
    data_dir: Path = Path("var/ufo")  # index snapshots and kept source images
    keep_images: bool = True  # needed to re-embed the gallery on a model upgrade
    # At start, re-embed a gallery of an older model version with the repository's newest (single gateway only)
    auto_upgrade: bool = True
    api_keys: list[str] = Field(default_factory=list)  # salted hash records (see service/api/auth.py), never keys
    api_keys_file: Path | None = None  # one hash record per line (a mounted secret)
    require_auth: bool | None = None  # None: required whenever `host` is not a loopback address
    limits: Limits = Limits()
    rate_limit: RateLimitSettings = RateLimitSettings()
    index: IndexSettings = IndexSettings()
    milvus: MilvusSettings = MilvusSettings()  # UFO_MILVUS__URI, UFO_MILVUS__TOKEN: used when index.engine=milvus
    worker: WorkerSettings = WorkerSettings()
    log_level: str = "INFO"
    # task → folder of <label>/<image> files upserted into the gallery at start (the demo gallery, say)
    enroll: dict[str, Path] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("UFO_CONFIG_FILE")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, file_secret_settings]
        if yaml_file:
            if not Path(yaml_file).is_file():
                raise ValueError(f"UFO_CONFIG_FILE={yaml_file} does not exist")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def auth_required(self) -> bool:
        return self.require_auth if self.require_auth is not None else not self.is_loopback

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.auth_required and not (self.api_keys or self.api_keys_file):
            raise ValueError(f"binding {self.host} (not loopback) requires API keys: set UFO_API_KEYS or "
                             "UFO_API_KEYS_FILE (hash records from `ufo keys create`), or bind 127.0.0.1")
        if self.environment == "production" and self.require_auth is False:
            raise ValueError("require_auth=false is refused in production")
        return self
