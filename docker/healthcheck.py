"""Container health check, standard library only (the slim image has no curl or redis-cli).

    python /opt/ufo/healthcheck.py http://127.0.0.1:8080/healthz [URL ...]
    python /opt/ufo/healthcheck.py redis://redis:6379/0
    python /opt/ufo/healthcheck.py 'file:///tmp/ufo-worker.heartbeat?max_age_s=60'

Exit 0 when every URL is healthy within the timeout, else 1: an http(s) URL must answer 2xx, a redis URL
must answer PING with PONG, a file URL must name a file modified less than `max_age_s` seconds ago (the
worker's heartbeat: `ufo worker` renews it every loop round, so an old file means a stuck worker).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 4.0


def http_healthy(url: str, timeout_s: float = TIMEOUT_S) -> bool:
    """True when `url` answers 2xx (urlopen raises on 4xx/5xx and on connection errors)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_healthy(url: str, timeout_s: float = TIMEOUT_S) -> bool:
    """True when the Redis server at `url` answers PING with +PONG (an auth error counts as reachable)."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def file_fresh(url: str) -> bool:
    """True when the file of `file:///path?max_age_s=N` (default 60) was modified less than N seconds ago."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    max_age_s = float(query.get("max_age_s", "60"))
    try:
        age_s = time.time() - os.stat(urllib.parse.unquote(parts.path)).st_mtime
    except OSError:
        return False
    if age_s >= max_age_s:
        print(f"stale: {parts.path} last beat {age_s:.0f} s ago (limit {max_age_s:g} s)", file=sys.stderr)
    return age_s < max_age_s


def healthy(url: str) -> bool:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("http", "https"):
        return http_healthy(url)
    if scheme == "redis":
        return redis_healthy(url)
    if scheme == "file":
        return file_fresh(url)
    raise ValueError(f"unsupported URL {url!r}: expected http(s)://, redis:// or file://")


def main(urls: list[str]) -> int:
    if not urls:
        print("usage: healthcheck.py URL [URL ...]", file=sys.stderr)
        return 2
    failed = [url for url in urls if not healthy(url)]
    for url in failed:
        print(f"unhealthy: {url}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
