"""Optional external reputation (AbuseIPDB-style API): off by default, cached."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import httpx
from pyrate_limiter import Duration, Limiter, Rate
from tenacity import (
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from tenacity import Retrying as _Retrying

from pipeline import log
from pipeline.errors import EnricherUnavailable

_log = log.get("enrich.reputation")


class ReputationSource(Protocol):
    """A 0..100 badness score for an address, or None when there is no answer."""

    def score(self, ip: str) -> float | None:
        """Score of ``ip``; raises EnricherUnavailable when the service fails."""
        ...


class NoReputation:
    """The default: no external look-ups."""

    def score(self, ip: str) -> float | None:
        """Always None."""
        return None


class _Retryable(Exception):
    """A response worth asking again (429, 5xx)."""


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _Retryable | httpx.TransportError)


class AbuseIpDbReputation:
    """AbuseIPDB ``/api/v2/check`` confidence score, cached and rate-limited.

    Only addresses of sources l4s has already rated are asked about, and each
    answer is kept ``ttl`` seconds, so a busy source costs one request a day.
    When the local rate budget is spent the answer is None (rated without it).

    Args:
        api_key: the API key (sent in the ``Key`` header, never logged).
        base_url: service root; tests point it at a local server.
        per_minute: requests allowed per minute.
        ttl: seconds an answer is cached.
        attempts: tries per request on connection errors, 429 and 5xx.

    Example:
        >>> rep = AbuseIpDbReputation("key", base_url="http://127.0.0.1:9/")
        >>> rep.cached("192.0.2.1") is None
        True
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = "https://api.abuseipdb.com",
        max_age_days: int = 90,
        per_minute: int = 30,
        ttl: float = 86400.0,
        cache_size: int = 65536,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client or httpx.Client(
            base_url=base_url,
            timeout=timeout,
            headers={"Key": api_key, "Accept": "application/json"},
        )
        self._max_age = max_age_days
        self._ttl = ttl
        self._cache_size = cache_size
        self._clock = clock
        self._cache: dict[str, tuple[float, float | None]] = {}
        self._limiter = Limiter(
            Rate(per_minute, Duration.MINUTE), raise_when_fail=False
        )
        self._attempts = attempts
        self._backoff = backoff
        self.requests = 0
        self.rate_limited = 0

    def cached(self, ip: str) -> float | None:
        """The cached score of ``ip`` if fresh, without any request."""
        hit = self._cache.get(ip)
        if hit is not None and hit[0] > self._clock():
            return hit[1]

        return None

    def score(self, ip: str) -> float | None:
        """The confidence score (0..100) of ``ip``; None if rate-limited.

        Raises:
            EnricherUnavailable: the service failed after the retries.
        """
        hit = self._cache.get(ip)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        if not self._limiter.try_acquire("abuseipdb"):
            self.rate_limited += 1
            return None
        value = self._fetch(ip)
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[ip] = (self._clock() + self._ttl, value)

        return value

    def _fetch(self, ip: str) -> float | None:
        retrying = _Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=10),
            retry=retry_if_exception(_retryable),
            reraise=False,
        )
        try:
            response = retrying(self._get, ip)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise EnricherUnavailable(f"reputation service failed: {cause}") from None
        except httpx.HTTPError as exc:
            raise EnricherUnavailable(f"reputation service failed: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise EnricherUnavailable(
                f"reputation service answered HTTP {response.status_code}"
            )
        try:
            data = response.json()["data"]
            value = data["abuseConfidenceScore"]
        except (ValueError, KeyError, TypeError):
            raise EnricherUnavailable(
                "reputation service answered without a score"
            ) from None
        if not isinstance(value, int | float):
            raise EnricherUnavailable("reputation service answered a non-numeric score")

        return float(value)

    def _get(self, ip: str) -> httpx.Response:
        self.requests += 1
        response = self._client.get(
            "/api/v2/check",
            params={"ipAddress": ip, "maxAgeInDays": str(self._max_age)},
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")

        return response

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
