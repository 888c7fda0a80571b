"""Client-side spreading of Triton calls: one client per resolved endpoint, picked round-robin.

A gateway that dials a Kubernetes ClusterIP Service opens one HTTP/2 connection and kube-proxy pins it to one
Triton pod: every call of that gateway lands there. With a headless Service the name resolves to every ready
pod's address instead; this pool resolves `url` (`host:port`, or several separated by commas), keeps one
tritonclient client per address, hands them out round-robin, and re-resolves every `refresh_s` so pods that
come and go are followed (a client whose address left the answer is closed). When a resolution fails the
previous endpoints are kept; when the name never resolves, the name itself is dialled (gRPC resolves it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

C = TypeVar("C")


def split_endpoints(url: str) -> list[tuple[str, int]]:
    """'a:8001,b:8001' → [('a', 8001), ('b', 8001)]; ValueError naming a part without a port."""
    endpoints = []
    for part in (p.strip() for p in url.split(",")):
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"triton url part {part!r} is not host:port (in {url!r})")
        endpoints.append((host.strip("[]"), int(port)))
    return endpoints


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as 'ip:port' (IPv4 first: what the servers usually bind)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET})
    v6 = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET6})
    return [f"{ip}:{port}" for ip in v4] or [f"[{ip}]:{port}" for ip in v6]


class EndpointPool(Generic[C]):
    """Clients by endpoint ('ip:port'), handed out round-robin by `next()`; `refresh()` re-resolves."""

    def __init__(self, url: str, make_client: Callable[[str], C], close_client: Callable[[C], Awaitable[None]],
                 *, refresh_s: float = 30.0) -> None:
        self.targets = split_endpoints(url)
        self.make_client = make_client
        self.close_client = close_client
        self.refresh_s = refresh_s
        self.clients: dict[str, C] = {}
        self._order: list[str] = []
        self._turn = itertools.count()
        self._resolved_at = float("-inf")
        self._refreshing: asyncio.Lock | None = None

    async def resolve_all(self) -> list[str]:
        """The endpoints the targets resolve to now; a name that does not resolve is kept as given."""
        found: list[str] = []
        for host, port in self.targets:
            try:
                found += await resolve(host, port)
            except OSError as exc:
                log.warning("cannot resolve triton host %s: %s", host, exc)
                found.append(f"{host}:{port}")
        return list(dict.fromkeys(found))

    async def refresh(self) -> None:
        """Re-resolve and open / close clients to match; keeps the old set if nothing resolved."""
        self._refreshing = self._refreshing or asyncio.Lock()
        async with self._refreshing:
            self._resolved_at = time.monotonic()
            endpoints = await self.resolve_all()
            if not endpoints:
                return
            gone = [e for e in self.clients if e not in endpoints]
            for endpoint in endpoints:
                if endpoint not in self.clients:
                    self.clients[endpoint] = self.make_client(endpoint)
            self._order = endpoints
            if gone or len(endpoints) != len(self.clients) - len(gone):
                log.info("triton endpoints: %s", ", ".join(endpoints))
            for endpoint in gone:
                await self.close_client(self.clients.pop(endpoint))

    def next(self) -> C:
        """The next client round-robin (the caller re-resolves with `maybe_refresh`)."""
        if not self._order:
            raise LookupError("no triton endpoint (the pool is not started, or closed)")
        return self.clients[self._order[next(self._turn) % len(self._order)]]

    def all(self) -> list[C]:
        return [self.clients[e] for e in self._order]

    async def maybe_refresh(self) -> None:
        """Refresh when the last resolution is older than `refresh_s` (0: never after the first)."""
        if self.refresh_s > 0 and time.monotonic() - self._resolved_at >= self.refresh_s:
            self._resolved_at = time.monotonic()  # before any await: concurrent calls refresh once
            await self.refresh()

    async def close(self) -> None:
        clients, self.clients, self._order = list(self.clients.values()), {}, []
        for client in clients:
            await self.close_client(client)
