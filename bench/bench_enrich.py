"""Enrichment speed: GeoIndex cold and warm beside a bare maxminddb lookup loop.

Builds a City-flavoured and an ASN-flavoured database of ``--networks`` networks
(default 100,000, like a trimmed GeoLite2), then times, in the same run:

- bare: ``reader.get_with_prefix_len`` on both readers (the floor: C lookups only)
- cold: ``GeoIndex.lookup`` on addresses never seen (parse, special check, two
  lookups, mapping, record build, cache fill)
- warm: ``GeoIndex.lookup`` on addresses already cached
- enrich_warm: warm lookup + Tor membership + network classification

Prints one JSON line and writes bench/results/enrich.json. Each figure is the
median of ``--repeat`` runs; ratios are against the bare loop of the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import maxminddb
from mmdb_writer import MMDBWriter
from netaddr import IPSet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enrichers.classify import NetworkClassifier
from enrichers.geo import GeoIndex
from enrichers.tor import TorExitList
from pipeline import log

CITIES = [
    "Berlin",
    "Amsterdam",
    "Ashburn",
    "Frankfurt",
    "Singapore",
    "Moscow",
    "Beijing",
]
COUNTRIES = [
    ("DE", "Germany", "EU"),
    ("NL", "Netherlands", "EU"),
    ("US", "United States", "NA"),
    ("SG", "Singapore", "AS"),
    ("RU", "Russia", "EU"),
    ("CN", "China", "AS"),
]
ASNS = [
    (14061, "DigitalOcean, LLC"),
    (16276, "OVH SAS"),
    (24940, "Hetzner Online GmbH"),
    (7922, "Comcast Cable Communications, LLC"),
    (398324, "Censys, Inc."),
]


def _networks(count: int, rng: random.Random) -> list[int]:
    """``count`` distinct public /24s (as the int of their first address)."""
    chosen: set[int] = set()
    while len(chosen) < count:
        first = rng.randrange(1, 223)
        if first in (10, 100, 127, 169, 172, 192, 198, 203):
            continue
        chosen.add((first << 24) | (rng.randrange(0, 1 << 16) << 8))

    return sorted(chosen)


def _build(directory: Path, nets: list[int], rng: random.Random) -> tuple[Path, Path]:
    city = MMDBWriter(
        6, "GeoLite2-City", languages=["en"], description="bench", ipv4_compatible=True
    )
    asn = MMDBWriter(
        6, "GeoLite2-ASN", languages=["en"], description="bench", ipv4_compatible=True
    )
    for i, base in enumerate(nets):
        cidr = IPSet([f"{base >> 24}.{(base >> 16) & 255}.{(base >> 8) & 255}.0/24"])
        cc, name, cont = COUNTRIES[i % len(COUNTRIES)]
        city.insert_network(
            cidr,
            {
                "city": {
                    "geoname_id": 1000 + i % 500,
                    "names": {"en": CITIES[i % len(CITIES)], "de": "x"},
                },
                "continent": {
                    "code": cont,
                    "geoname_id": 6255148,
                    "names": {"en": "Europe"},
                },
                "country": {
                    "geoname_id": 2921044 + i % 50,
                    "iso_code": cc,
                    "names": {"en": name},
                },
                "location": {
                    "accuracy_radius": 100,
                    "latitude": 52.5 + (i % 100) / 100,
                    "longitude": 13.4,
                    "time_zone": "Europe/Berlin",
                },
                "registered_country": {
                    "geoname_id": 2921044,
                    "iso_code": cc,
                    "names": {"en": name},
                },
            },
        )
        number, org = ASNS[i % len(ASNS)]
        asn.insert_network(
            cidr,
            {
                "autonomous_system_number": number + i % 1000,
                "autonomous_system_organization": org,
            },
        )
    city_path, asn_path = directory / "City.mmdb", directory / "ASN.mmdb"
    city.to_db_file(str(city_path))
    asn.to_db_file(str(asn_path))

    return city_path, asn_path


def _addresses(nets: list[int], count: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        value = rng.choice(nets) | rng.randrange(1, 255)
        out.append(
            f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}"
        )

    return out


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument(
        "--hot", type=int, default=5_000, help="distinct addresses in the warm set"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "enrich.json"
    )
    args = parser.parse_args()
    log.configure("warning", "console")

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="l4s-bench-"))
    t0 = time.perf_counter()
    nets = _networks(args.networks, rng)
    city_path, asn_path = _build(tmp, nets, rng)
    build_s = time.perf_counter() - t0
    tor_path = tmp / "tor.txt"
    tor_path.write_text("\n".join(_addresses(nets, 1500, rng)) + "\n")
    classifier = NetworkClassifier.default()
    exits = TorExitList.from_file(tor_path)

    bare_city = maxminddb.open_database(str(city_path), maxminddb.MODE_AUTO)
    bare_asn = maxminddb.open_database(str(asn_path), maxminddb.MODE_AUTO)
    hot = _addresses(nets, args.hot, rng)
    warm_seq = [rng.choice(hot) for _ in range(args.lookups)]

    runs: dict[str, list[float]] = {
        "bare": [],
        "cold": [],
        "warm": [],
        "enrich_warm": [],
    }
    for _ in range(args.repeat):
        cold_seq = _addresses(nets, args.lookups, rng)  # fresh, mostly unseen addresses

        start = time.perf_counter()
        for ip in cold_seq:
            bare_city.get_with_prefix_len(ip)
            bare_asn.get_with_prefix_len(ip)
        runs["bare"].append(_rate(len(cold_seq), time.perf_counter() - start))

        index = GeoIndex(city_path, asn_path, cache_size=1 << 20)
        lookup = index.lookup
        start = time.perf_counter()
        for ip in cold_seq:
            lookup(ip)
        runs["cold"].append(_rate(len(cold_seq), time.perf_counter() - start))

        for ip in hot:
            lookup(ip)
        start = time.perf_counter()
        for ip in warm_seq:
            lookup(ip)
        runs["warm"].append(_rate(len(warm_seq), time.perf_counter() - start))

        classify = classifier.classify
        start = time.perf_counter()
        for ip in warm_seq:
            geo = lookup(ip)
            classify(geo, tor=ip in exits)
        runs["enrich_warm"].append(_rate(len(warm_seq), time.perf_counter() - start))

    med = {name: statistics.median(values) for name, values in runs.items()}
    result = {
        "bench": "enrich",
        "networks": args.networks,
        "lookups": args.lookups,
        "repeat": args.repeat,
        "build_seconds": round(build_s, 1),
        "bare_per_s": round(med["bare"]),
        "cold_per_s": round(med["cold"]),
        "warm_per_s": round(med["warm"]),
        "enrich_warm_per_s": round(med["enrich_warm"]),
        # time per lookup relative to the bare loop: < 1 is faster than bare
        "cold_time_vs_bare": round(med["bare"] / med["cold"], 2),
        "warm_time_vs_bare": round(med["bare"] / med["warm"], 2),
        "enrich_warm_time_vs_bare": round(med["bare"] / med["enrich_warm"], 2),
        "target_warm_within_2x_of_bare": med["bare"] / med["warm"] <= 2.0,
    }
    line = json.dumps(result)
    print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
