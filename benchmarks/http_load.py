"""A lean closed-loop HTTP/1.1 load generator on raw asyncio streams.

Why not httpx: on the 2 cores this project's machines have, the load generator
shares the CPU with the service it measures, and httpx spends about 1 ms of
CPU per request (request building, header models, its connection pool): at a
few hundred requests per second the generator itself took most of a core and
the figures measured the client as much as the server. Here each client keeps
one keep-alive connection, every request is a bytes object built before the
clock starts, and a response is read as "headers up to the blank line, then
exactly Content-Length bytes" (our service always sends Content-Length; a
chunked or length-less reply is counted as an error, not guessed at). That
costs some tens of microseconds per request.

Closed loop: each of ``clients`` coroutines sends its next request as soon as
the previous reply is in. A request counts if it started after the warm-up and
finished inside the measuring window; throughput is those requests over the
window's length. The generator's own CPU time per request is reported too, so
a reader can see how much of the machine the measurement itself took.

Used by ``store_api.py`` (the store's floor and reads, side by side),
``slides.py`` and ``slide_latency.py`` (tile latency).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "LoadResult",
    "Endpoint",
    "build_request",
    "closed_loop",
    "fetch_all",
    "percentile",
]

#: a whole response head larger than this is not what our service sends
_MAX_HEAD = 64 * 1024


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


@dataclass
class LoadResult:
    """What one closed-loop run measured (latencies in ms, client side)."""

    name: str
    clients: int
    count: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_ms: float = float("nan")  # service process CPU per request (user + system)
    client_cpu_ms: float = float("nan")  # this process's CPU per request (the generator)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99) if self.latencies_ms else float("nan")

    @property
    def per_request_ms(self) -> float:
        """Service time per request the server sustained (1000 / throughput)."""
        return 1000.0 / self.rps if self.rps else float("nan")


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: host and port of a base URL, and its path prefix."""

    host: str
    port: int
    prefix: str

    @classmethod
    def of(cls, base_url: str) -> Endpoint:
        parts = urlsplit(base_url)
        if parts.scheme != "http":
            raise ValueError("only plain http on loopback is supported")
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/"))


def build_request(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str = "application/json",
) -> bytes:
    """The whole HTTP/1.1 request as bytes (``path`` below the endpoint's prefix)."""
    lines = [f"{method} {endpoint.prefix}{path} HTTP/1.1", f"Host: {endpoint.host}:{endpoint.port}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection:
    """One keep-alive connection; reopened when the server closes it."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.endpoint.host, self.endpoint.port, limit=_MAX_HEAD
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request``, return (status, body). Raises on a malformed reply."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise ValueError("chunked replies are not supported by this generator")
        if length is None:
            raise ValueError("reply without Content-Length")
        body = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body


async def closed_loop(
    name: str,
    endpoint: Endpoint,
    clients: int,
    next_request: Callable[[random.Random], bytes],
    *,
    expect: int = 200,
    warmup: float = 0.5,
    duration: float = 2.5,
    server_cpu: Callable[[], float] | None = None,
    seed: int = 0,
) -> LoadResult:
    """``clients`` closed-loop clients for ``warmup`` + ``duration`` seconds.

    ``next_request(rng)`` returns the bytes of a client's next request (build
    them up front and pick one: the generator should cost as little as
    possible). A reply with another status than ``expect``, or a broken
    connection, is an error. ``server_cpu()`` (CPU seconds of the server so
    far), if given, turns into the server's CPU per request.
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    start, end = t0 + warmup, t0 + warmup + duration
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    done = 0

    async def client(i: int) -> None:
        nonlocal errors, done
        rng = random.Random(seed * 1_000_003 + i * 7919 + clients)
        conn = _Connection(endpoint)
        try:
            await conn.open()
            while loop.time() < t0:
                await asyncio.sleep(0.005)
            while True:
                request = next_request(rng)
                started_at = loop.time()
                if started_at >= end:
                    return
                begun = time.perf_counter()
                try:
                    status, _ = await conn.exchange(request)
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    conn.close()
                    status = 0
                took = (time.perf_counter() - begun) * 1000
                done += 1
                if started_at >= start and loop.time() <= end:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == expect:
                        latencies.append(took)
                    else:
                        errors += 1
        finally:
            conn.close()

    cpu0 = server_cpu() if server_cpu else float("nan")
    own0 = time.process_time()
    await asyncio.gather(*(client(i) for i in range(clients)))
    own = time.process_time() - own0
    srv = (server_cpu() - cpu0) if server_cpu else float("nan")
    return LoadResult(
        name,
        clients,
        len(latencies),
        errors,
        duration,
        latencies,
        server_cpu_ms=srv * 1000 / done if done else float("nan"),
        client_cpu_ms=own * 1000 / done if done else float("nan"),
        statuses=statuses,
    )


async def fetch_all(
    endpoint: Endpoint, requests: Sequence[bytes], clients: int, *, expect: int = 200
) -> tuple[list[float], float, int]:
    """Send every request once, over ``clients`` connections sharing the list.

    Returns (latencies in ms of the replies with status ``expect``, wall
    seconds, count of other replies). For fixed work lists (tile addresses)
    where a time window does not fit.
    """
    pending = list(reversed(requests))
    latencies: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        conn = _Connection(endpoint)
        try:
            while pending:
                request = pending.pop()
                begun = time.perf_counter()
                try:
                    status, _ = await conn.exchange(request)
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    conn.close()
                    status = 0
                if status == expect:
                    latencies.append((time.perf_counter() - begun) * 1000)
                else:
                    errors += 1
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, time.perf_counter() - t0, errors
