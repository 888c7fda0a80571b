"""A Triton Inference Server backend: tritonclient's asyncio gRPC client (or HTTP), same interface.

Manifests come from the same model repository the server serves (for ModelInfo and preprocessing), and
every call pins the manifest's version, so the preprocessing we apply and the model that runs always
agree. The server runs with explicit model control: `start` checks each model version is ready and, with
`load_models=True`, asks the server to load it; a model that vanishes later (server restart) is checked
again on the next call.

Spreading: `url` may name several servers (`a:8001,b:8001`) and each name may resolve to several addresses
(a Kubernetes headless Service: one per ready pod); `service.inference.endpoints.EndpointPool` keeps one client
per address, round-robin, re-resolved every `resolve_interval_s`. A retried call goes to the next endpoint.

Failure policy, so a gateway never hangs on a dead server:
- every call is bounded by `timeout_s` (client deadline and an asyncio timeout around it);
- only UNAVAILABLE / connection errors are retried, `retries` times, with exponential backoff from
  `backoff_s`: a call gives up within (retries + 1) × timeout_s + backoff_s × (2^retries − 1);
- giving up raises BackendUnavailable (→ 503 + Retry-After); a server-side queue limit raises Overloaded;
  any other server error raises InferenceError. No bare tritonclient/grpc/aiohttp exception escapes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Literal, TypeVar

import aiohttp
import numpy as np
import tritonclient.grpc.aio as grpcclient
import tritonclient.http.aio as httpclient
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE
from tritonclient.utils import InferenceServerException

from model_store.model_config import CONFIG_FILE, read_config
from service.inference.base import InferenceBackend, ModelInfo, check_pixels
from service.inference.embedded import chunks
from service.inference.endpoints import EndpointPool
from service.inference.errors import BackendUnavailable, InferenceError, Overloaded
from service.inference.repository import RepositoryEntry, load_repository, version_entry

log = logging.getLogger(__name__)

Protocol = Literal["grpc", "http"]
Client = grpcclient.InferenceServerClient | httpclient.InferenceServerClient
T = TypeVar("T")

INPUT_NAME = "pixels"
OUTPUT_NAME = "embedding"
# The channel reconnects within a second of a restarted server coming back (gRPC's default backoff grows
# to two minutes, during which every call fails fast with UNAVAILABLE).
_GRPC_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_RETRYABLE = {"StatusCode.UNAVAILABLE", "503"}
_TIMEOUT = {"StatusCode.DEADLINE_EXCEEDED", "504"}
_CANCELLED = {"StatusCode.CANCELLED"}  # the channel was closed under the call (backend closing)
_OVERLOADED = {"StatusCode.RESOURCE_EXHAUSTED", "429"}
_MODEL_GONE = ("unknown model", "is not found", "not ready", "is not loaded")


class ModelNotReady(BackendUnavailable):
    """The server is up but the model version is not loaded (never loaded, unloaded, or failed to load)."""


class _Retryable(Exception):
    """Internal: a failure worth retrying (the server or the connection is unavailable)."""


def classify(exc: BaseException, what: str, timeout_s: float) -> Exception:
    """The typed error for a failed call; `_Retryable` wraps the ones a retry may fix."""
    if isinstance(exc, TimeoutError):
        return BackendUnavailable(f"triton: {what} timed out after {timeout_s:g} s")
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError | OSError):
        return _Retryable(f"triton: {what}: cannot reach the server ({type(exc).__name__}: {exc})")
    if isinstance(exc, InferenceServerException):
        status, message = str(exc.status()), str(exc.message())
        if any(marker in message.lower() for marker in _MODEL_GONE):
            return ModelNotReady(f"triton: {what}: model not available on the server ({message})")
        if status in _RETRYABLE:
            return _Retryable(f"triton: {what}: server unavailable ({message})")
        if status in _TIMEOUT:
            return BackendUnavailable(f"triton: {what} timed out ({message})")
        if status in _CANCELLED:
            return BackendUnavailable(f"triton: {what} cancelled ({message})")
        if status in _OVERLOADED:
            return Overloaded(f"triton: {what}: server queue full ({message})")
        return InferenceError(f"triton: {what} failed ({status}: {message})")
    return InferenceError(f"triton: {what} failed ({type(exc).__name__}: {exc})")


def local_max_batch_size(model_dir: Path) -> int | None:
    """max_batch_size from the repository's own config.pbtxt (None if it cannot be read)."""
    try:
        return int(read_config(model_dir / CONFIG_FILE).max_batch_size) or None
    except (OSError, ValueError):
        return None


class TritonBackend(InferenceBackend):
    """Embeds through a Triton server at `url` (host:port, no scheme)."""

    name = "triton"

    def __init__(
        self,
        repository: Path | str,
        url: str,
        *,
        protocol: Protocol = "grpc",
        tasks: Iterable[str] | None = None,
        model_names: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.1,
        load_models: bool = False,
        require_ready: bool = False,
        verify_hash: bool = True,
        resolve_interval_s: float = 30.0,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ValueError("need timeout_s > 0, retries >= 0, backoff_s >= 0")
        if "://" in url:
            raise ValueError(f"url is host:port without a scheme, got {url!r}")
        self.repository = Path(repository)
        self.url = url
        self.protocol = protocol
        self.tasks = None if tasks is None else tuple(tasks)
        self.model_names = dict(model_names or {})
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.load_models = load_models
        self.require_ready = require_ready
        self.verify_hash = verify_hash
        self.resolve_interval_s = resolve_interval_s  # re-resolve the endpoints this often (0: only at start)
        self._entries: dict[str, RepositoryEntry] = {}  # task → the served version
        self._models: dict[str, ModelInfo] = {}
        self._loaded: dict[str, dict[int, tuple[ModelInfo, RepositoryEntry]]] = {}  # task → version → …
        self._batch_sizes: dict[tuple[str, int], int] = {}  # (task, version) → the server's max_batch_size
        self._prepare_locks: dict[tuple[str, int], asyncio.Lock] = {}  # one readiness check / load at a time
        self._pool: EndpointPool[Client] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._pool is not None:
            return
        if not self._entries:
            self._entries = await asyncio.to_thread(
                load_repository, self.repository, self.tasks, model_names=self.model_names,
                verify_hash=self.verify_hash,
            )
            self._loaded = {t: {e.version: (ModelInfo.from_manifest(e.manifest), e)} for t, e in self._entries.items()}
            self._models = {t: self._loaded[t][e.version][0] for t, e in self._entries.items()}
        pool: EndpointPool[Client] = EndpointPool(self.url, self._make_client, self._close_client,
                                                  refresh_s=self.resolve_interval_s)
        await pool.refresh()
        self._pool = pool
        for task, entry in self._entries.items():
            try:
                await self._prepare(task, entry)
            except (BackendUnavailable, InferenceError) as exc:
                if self.require_ready:
                    raise
                log.warning("triton at %s not ready for task %s yet (will retry on use): %s", self.url, task, exc)

    def _make_client(self, endpoint: str) -> Client:
        if self.protocol == "grpc":
            return grpcclient.InferenceServerClient(endpoint, channel_args=_GRPC_CHANNEL_ARGS)
        return httpclient.InferenceServerClient(endpoint, conn_timeout=self.timeout_s)

    @staticmethod
    async def _close_client(client: Client) -> None:
        await client.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._batch_sizes.clear()
        if pool is not None:
            await pool.close()

    # -- the interface -----------------------------------------------------------------------------

    async def health(self) -> bool:
        """Some server ready with every served model version ready (one attempt each, bounded by timeout_s)."""
        if self._pool is None or not self._entries:
            return False
        await self._pool.maybe_refresh()
        for client in self._pool.all():
            if await self._client_healthy(client):
                return True
        return False

    async def _client_healthy(self, client: Client) -> bool:
        try:
            if not await asyncio.wait_for(client.is_server_ready(), self.timeout_s):
                return False
            for entry in self._entries.values():
                ready = client.is_model_ready(entry.model_dir.name, str(entry.version))
                if not await asyncio.wait_for(ready, self.timeout_s):
                    return False
        except Exception as exc:  # noqa: BLE001 - health answers False, whatever went wrong
            log.debug("triton health check failed: %s", exc)
            return False
        return True

    def models(self) -> dict[str, ModelInfo]:
        return dict(self._models)

    @property
    def max_batch_size(self) -> int:
        sizes = self._batch_sizes.values() or [local_max_batch_size(e.model_dir) or 1 for e in self._entries.values()]
        return min(sizes, default=1)

    async def embed(self, task: str, pixels: np.ndarray, *, version: int | None = None) -> np.ndarray:
        if self._pool is None:
            raise BackendUnavailable("the triton backend is not started, or closed")
        info = self.model(task, version)
        entry = self._loaded[task][info.version][1]
        pixels = check_pixels(info, pixels)
        if len(pixels) == 0:
            return np.zeros((0, info.embedding_dim), dtype=np.float32)
        try:
            parts = await self._infer_chunks(task, entry, pixels)
        except ModelNotReady:
            if not self.load_models:
                raise
            parts = await self._infer_chunks(task, entry, pixels)  # the model was unloaded: loaded again
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _infer_chunks(self, task: str, entry: RepositoryEntry, pixels: np.ndarray) -> list[np.ndarray]:
        """Pixels split to the model's max_batch_size, the parts sent concurrently."""
        max_batch = await self._prepare(task, entry)
        return await asyncio.gather(*(self._infer(task, entry, part) for part in chunks(pixels, max_batch)))

    # -- model upgrades ----------------------------------------------------------------------------

    def versions(self, task: str) -> dict[int, ModelInfo]:
        return {version: info for version, (info, _) in self._loaded.get(task, {}).items()}

    async def load_version(self, task: str, version: int | None = None) -> ModelInfo:
        """The server loads every version of a model (`version_policy: all`, set by `ufo export`); with
        `load_models` it is asked to reload the model so that a newly exported version is picked up."""
        self.model(task)
        if version in self._loaded[task] and (task, version) in self._batch_sizes:
            return self._loaded[task][version][0]  # loaded and ready: no file read, no server reload
        entry = await asyncio.to_thread(version_entry, self._entries[task].model_dir, version, self.verify_hash)
        self._loaded[task].setdefault(entry.version, (ModelInfo.from_manifest(entry.manifest), entry))
        self._batch_sizes.pop((task, entry.version), None)  # check readiness (and load) now
        await self._prepare(task, entry, reload=self.load_models)
        return self._loaded[task][entry.version][0]

    def serve_version(self, task: str, version: int) -> None:
        info, entry = self._loaded[task][version]
        self._models[task], self._entries[task] = info, entry

    async def unload_version(self, task: str, version: int) -> None:
        """Forgets the version here; the server keeps what its version policy says (other replicas may use it)."""
        if version != self.model(task).version:
            self._loaded.get(task, {}).pop(version, None)
            self._batch_sizes.pop((task, version), None)

    # -- calls to the server -----------------------------------------------------------------------

    async def _prepare(self, task: str, entry: RepositoryEntry, *, reload: bool = False) -> int:
        """Make sure the model version is ready (loading it if allowed); returns its max batch."""
        key = (task, entry.version)
        if key in self._batch_sizes:
            return self._batch_sizes[key]
        async with self._prepare_locks.setdefault(key, asyncio.Lock()):
            if key in self._batch_sizes:  # a concurrent call prepared it while this one waited
                return self._batch_sizes[key]
            self._batch_sizes[key] = await self._check_model(entry, reload=reload)
            return self._batch_sizes[key]

    async def _check_model(self, entry: RepositoryEntry, *, reload: bool = False) -> int:
        name, version = entry.model_dir.name, str(entry.version)
        what = f"{name}/{version}"
        ready = not reload and await self._call(f"readiness of {what}", lambda c: c.is_model_ready(name, version))
        if not ready and self.load_models:
            log.info("asking triton at %s to load %s", self.url, name)
            try:
                await self._call(f"loading {name}", lambda c: c.load_model(name))
            except InferenceError as exc:  # the server refused: the model is unavailable, not our request bad
                raise ModelNotReady(str(exc)) from exc
            ready = await self._call(f"readiness of {what}", lambda c: c.is_model_ready(name, version))
        if not ready:
            hint = "" if self.load_models else " (load it, or set load_models=True)"
            raise ModelNotReady(f"triton: model {what} is not ready on {self.url}{hint}")
        config = await self._call(f"config of {name}", lambda c: self._get_config(c, name, version))
        max_batch = int(config.get("max_batch_size", 0)) or local_max_batch_size(entry.model_dir)
        if not max_batch:
            raise InferenceError(f"triton: model {name} has max_batch_size 0; the contract needs a batch axis")
        return max_batch

    async def _get_config(self, client: Client, name: str, version: str) -> dict:
        if self.protocol == "grpc":
            return (await client.get_model_config(name, version, as_json=True, client_timeout=self.timeout_s))["config"]
        return await client.get_model_config(name, version)

    async def _infer(self, task: str, entry: RepositoryEntry, pixels: np.ndarray) -> np.ndarray:
        name, version = entry.model_dir.name, str(entry.version)
        module = grpcclient if self.protocol == "grpc" else httpclient
        inputs = [module.InferInput(INPUT_NAME, list(pixels.shape), "FP32")]
        inputs[0].set_data_from_numpy(pixels)
        outputs = [module.InferRequestedOutput(OUTPUT_NAME)]
        extra = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

        async def infer(client: Client) -> np.ndarray:
            result = await client.infer(name, inputs, model_version=version, outputs=outputs, **extra)
            return result.as_numpy(OUTPUT_NAME)

        try:
            embeddings = await self._call(f"infer {name}/{version}", infer)
        except BackendUnavailable:
            self._batch_sizes.pop((task, entry.version), None)  # check readiness (and reload) on the next call
            raise
        expected = (len(pixels), entry.manifest.embedding_dim)
        if embeddings is None or embeddings.shape != expected:
            got = None if embeddings is None else list(embeddings.shape)
            raise InferenceError(f"triton: {name}/{version} returned {got}, expected {list(expected)}")
        return embeddings.astype(np.float32, copy=False)

    async def _call(self, what: str, call: Callable[[Client], Awaitable[T]]) -> T:
        """One server call with the timeout, retry and error-typing policy of this module."""
        for attempt in range(self.retries + 1):
            pool = self._pool
            if pool is None:
                raise BackendUnavailable("the triton backend is closed")
            await pool.maybe_refresh()
            client = pool.next()  # round-robin: a retry goes to the next endpoint
            try:
                return await asyncio.wait_for(call(client), self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a typed error below
                error, cause = classify(exc, what, self.timeout_s), exc
            if not isinstance(error, _Retryable):
                raise error from cause
            if attempt < self.retries:
                delay = self.backoff_s * 2**attempt
                log.debug("%s; retry %d/%d in %.2f s", error, attempt + 1, self.retries, delay)
                await asyncio.sleep(delay)
        log.warning("%s (gave up after %d attempts)", error, self.retries + 1)
        raise BackendUnavailable(str(error), retry_after_s=max(1.0, self.backoff_s * 2**self.retries)) from cause
