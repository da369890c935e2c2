"""Optional reverse DNS of *source* addresses, off by default, forward-confirmed.

Only an address can be given to it, never a name, so a host named in a payload
cannot reach a resolver through here. The enrich stage asks only for sources it
has already rated, never per log line.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from pipeline import log

_log = log.get("enrich.rdns")


class ReverseDns(Protocol):
    """Names a source address; None when it has no (confirmed) name."""

    def name_of(self, ip: str) -> str | None:
        """The forward-confirmed reverse name of ``ip``, or None."""
        ...


class NoReverseDns:
    """The default: no lookups at all."""

    def name_of(self, ip: str) -> str | None:
        """Always None."""
        return None


class ForwardConfirmedReverseDns:
    """PTR lookup whose name must resolve back to the same address (FCrDNS).

    A reverse name is a claim by whoever runs the reverse zone; the forward check
    stops an attacker from calling itself ``census1.shodan.io`` to pass as research.

    Args:
        timeout: seconds for the PTR and the forward lookup together.
        ttl: seconds an answer (or a miss) is kept.
        cache_size: most addresses kept.
        gethostbyaddr: the PTR resolver (tests inject a fake).
        getaddrinfo: the forward resolver (tests inject a fake).

    Example:
        >>> ForwardConfirmedReverseDns(timeout=1.0).name_of("10.0.0.1") is None
        True
    """

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        ttl: float = 3600.0,
        cache_size: int = 4096,
        gethostbyaddr: Callable[
            [str], tuple[str, list[str], list[str]]
        ] = socket.gethostbyaddr,
        getaddrinfo: Callable[..., list[tuple[Any, ...]]] = socket.getaddrinfo,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._ttl = ttl
        self._cache_size = cache_size
        self._ptr = gethostbyaddr
        self._forward = getaddrinfo
        self._clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="l4s-rdns")

    def _resolve(self, ip: str) -> str | None:
        try:
            name, _aliases, _addrs = self._ptr(ip)
        except (OSError, UnicodeError):
            return None
        try:
            infos = self._forward(name, None)
        except (OSError, UnicodeError):
            return None
        addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}

        return name.rstrip(".").lower() if ip in addresses else None

    def name_of(self, ip: str) -> str | None:
        """The confirmed name of ``ip``; None on no name, mismatch or timeout."""
        now = self._clock()
        hit = self._cache.get(ip)
        if hit is not None and hit[0] > now:
            return hit[1]
        future = self._pool.submit(self._resolve, ip)
        try:
            name = future.result(timeout=self._timeout)
        except FutureTimeout:
            _log.debug("rdns_timeout")
            name = None
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[ip] = (now + self._ttl, name)

        return name

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
