"""Milvus connection settings (`UFO_MILVUS__URI`, `UFO_MILVUS__TOKEN`, ...), used when `UFO_INDEX__ENGINE=milvus`.

The URI is a server (`http://host:19530`, `https://...`, `tcp://...`, `unix:/path`) or a local file path
ending in `.db`, which runs the embedded Milvus Lite (development and tests) through the same pymilvus
client. A malformed URI fails start-up with one line naming the setting, not at the first search.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, Field, field_validator

_SERVER_SCHEMES = ("http", "https", "tcp")


def check_uri(uri: str) -> str:
    """`uri` when it names a Milvus server or a Milvus Lite file; ValueError naming the setting otherwise."""
    if uri.startswith("unix:") and len(uri) > len("unix:"):
        return uri
    parsed = urlparse(uri)
    if parsed.scheme in _SERVER_SCHEMES:
        try:
            port = parsed.port
        except ValueError:
            port = -1
        if parsed.hostname and port != -1:
            return uri
        raise ValueError(f"UFO_MILVUS__URI={uri!r} is malformed: expected {parsed.scheme}://host[:port]")
    if "://" not in uri and uri.endswith(".db") and Path(uri).name != ".db":
        return uri
    raise ValueError(f"UFO_MILVUS__URI={uri!r} is malformed: expected http(s)://host:port, tcp://host:port, "
                     "unix:/path or a local file path ending in .db (Milvus Lite)")


def is_lite(uri: str) -> bool:
    """A local file: the embedded Milvus Lite."""
    return "://" not in uri and not uri.startswith("unix:")


class MilvusSettings(BaseModel):
    uri: str = "var/ufo/milvus.db"  # a server URI, or a local .db file = embedded Milvus Lite
    token: str | None = None  # "user:password" or an API key (server auth); None: no auth
    db_name: str = ""  # "" = the server's default database
    collection_prefix: str = "ufo"  # collections "<prefix>_<task>_<version>", alias "<prefix>_<task>"
    timeout_s: float = Field(default=10.0, gt=0)  # per call: a slow Milvus answers 503, never a hang
    retry_after_s: float = Field(default=2.0, gt=0)  # what a 503 tells clients while Milvus is unreachable
    index_wait_s: float = Field(default=600.0, ge=0)  # how long a new HNSW collection may index before ef tuning
    # a collection the alias no longer names is dropped this long after (requests in flight, replicas adopting)
    retire_after_s: float = Field(default=600.0, ge=0)
    # each new collection's shards (write parallelism across data nodes) and in-memory replicas (query nodes
    # serving it); both fixed when a collection is made (first fill, upgrade, rebuild), so a change applies from
    # the next one. replicas 1 passes no number: the cluster's own (clusterLevelLoadReplicaNumber, which our
    # Helm values set per resource group) applies. Milvus Lite accepts and ignores both.
    shards: int = Field(default=1, ge=1, le=64)
    replicas: int = Field(default=1, ge=1)

    @field_validator("uri")
    @classmethod
    def _check_uri(cls, uri: str) -> str:
        return check_uri(uri)

    @field_validator("collection_prefix")
    @classmethod
    def _check_prefix(cls, prefix: str) -> str:
        if not prefix or not (prefix[0].isalpha() or prefix[0] == "_") or not prefix.replace("_", "").isalnum():
            raise ValueError(f"UFO_MILVUS__COLLECTION_PREFIX={prefix!r}: letters, digits and _ only, not "
                             "starting with a digit")
        return prefix
