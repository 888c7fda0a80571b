"""Container health check, standard library only (the slim image has no curl or redis-cli).

    python /opt/ufo/healthcheck.py http://127.0.0.1:8080/healthz [URL ...]
    python /opt/ufo/healthcheck.py redis://redis:6379/0

Exit 0 when every URL is healthy within the timeout, else 1: an http(s) URL must answer 2xx, a redis URL
must answer PING with PONG.
"""

from __future__ import annotations

import socket
import sys
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


def healthy(url: str) -> bool:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("http", "https"):
        return http_healthy(url)
    if scheme == "redis":
        return redis_healthy(url)
    raise ValueError(f"unsupported URL {url!r}: expected http(s):// or redis://")


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
