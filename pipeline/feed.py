"""``l4s blocklist serve``: the blocklist as a plain-text feed for firewalls that poll.

Built on the standard library's ``ThreadingHTTPServer``: the feed is a few
read-only GET endpoints over a list held in memory, which needs no framework,
no extra dependency and no event loop, and prometheus_client already serves
``/metrics`` the same way. A follower thread keeps the list in sync with the
topic; each request renders from an immutable snapshot.

- ``GET /blocklist.txt?min_level=Critical`` (also ``/``): addresses and prefixes
  to block, one per line, with a strong ``ETag``; ``If-None-Match`` gives 304.
- ``GET /egress.txt``: callback hosts (addresses and names).
- ``GET /healthz``: 200 once the list is caught up with the topic and the
  follower polled recently, 503 otherwise.
- ``GET /metrics``: Prometheus metrics of this process.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline import log
from pipeline.blocklist import LEVELS, BlocklistEntry, parse_time
from pipeline.egress import EgressEntry
from pipeline.follower import effective
from pipeline.metrics import Metrics

_log = log.get("feed")
#: A follower that has not polled for this long is reported unhealthy.
STALE_SECONDS = 30.0


@dataclass(frozen=True)
class Snapshot:
    """The lists at one instant, as the follower thread last saw them."""

    entries: tuple[BlocklistEntry, ...] = ()
    egress: tuple[EgressEntry, ...] = ()
    caught_up: bool = False
    polled: float = 0.0


class Feed:
    """Holds the latest snapshot and renders the feed documents.

    Example:
        >>> feed = Feed(Metrics(CollectorRegistry()))  # doctest: +SKIP
        >>> feed.blocklist(now=time.time(), min_level="Critical")  # doctest: +SKIP
        ''
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._snapshot = Snapshot()
        self._lock = threading.Lock()

    def update(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    @property
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot

    def blocklist(self, now: float, min_level: str | None) -> str:
        live = [e for e in self.snapshot.entries if _live(e.expires_at, now)]
        return "".join(f"{e.address}\n" for e in effective(live, min_level))

    def egress_list(self, now: float) -> str:
        live = [
            e for e in self.snapshot.egress if e.enforce and _live(e.expires_at, now)
        ]
        return "".join(f"{e.host}\n" for e in live)

    def health(self, now: float) -> tuple[bool, dict[str, Any]]:
        snap = self.snapshot
        age = now - snap.polled if snap.polled else None
        healthy = snap.caught_up and age is not None and age < STALE_SECONDS
        body = {
            "caught_up": snap.caught_up,
            "entries": len(snap.entries),
            "poll_age": age,
        }
        return healthy, body


def _live(expires_at: str, now: float) -> bool:
    return parse_time(expires_at) > now


def handler_for(feed: Feed) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``feed``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "l4s-feed"
        protocol_version = "HTTP/1.1"

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, head: bool) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            now = time.time()
            path = url.path
            if path in ("/", "/blocklist.txt"):
                level = query["min_level"][0] if query.get("min_level") else None
                if level is not None and level not in LEVELS:
                    levels = ", ".join(LEVELS)
                    self._send(
                        HTTPStatus.BAD_REQUEST,
                        f"min_level must be one of {levels}\n",
                        head,
                    )
                    return
                self._send_list(feed.blocklist(now, level), head)
            elif path == "/egress.txt":
                self._send_list(feed.egress_list(now), head)
            elif path == "/healthz":
                healthy, body = feed.health(now)
                status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(status, json.dumps(body) + "\n", head, "application/json")
            elif path == "/metrics":
                data = generate_latest(feed.metrics.registry).decode()
                self._send(HTTPStatus.OK, data, head, CONTENT_TYPE_LATEST)
            else:
                self._send(HTTPStatus.NOT_FOUND, "not found\n", head)
            feed.metrics.feed_requests.labels(
                path=_path_label(path), code=str(self._code)
            ).inc()

        def _send_list(self, body: str, head: bool) -> None:
            etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
            wanted = self.headers.get("If-None-Match", "")
            if etag in {t.strip() for t in wanted.split(",")} or wanted.strip() == "*":
                self._code = HTTPStatus.NOT_MODIFIED
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._send(
                HTTPStatus.OK,
                body,
                head,
                extra={"ETag": etag, "Cache-Control": "no-cache"},
            )

        def _send(
            self,
            status: HTTPStatus,
            body: str,
            head: bool,
            content_type: str = "text/plain; charset=utf-8",
            extra: dict[str, str] | None = None,
        ) -> None:
            data = body.encode()
            self._code = status
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            # One structured line per request at debug; firewalls poll often.
            _log.debug(
                "feed_request", client=self.client_address[0], request=format % args
            )

    return Handler


def _path_label(path: str) -> str:
    known = ("/", "/blocklist.txt", "/egress.txt", "/healthz", "/metrics")
    return path if path in known else "other"


def make_server(feed: Feed, host: str, port: int) -> ThreadingHTTPServer:
    """The feed's HTTP server, bound but not yet serving."""
    server = ThreadingHTTPServer((host, port), handler_for(feed))
    server.daemon_threads = True
    return server
