"""Network classification from the shipped, reviewed data files."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from enrichers.classify import NetworkClassifier, SourceKind, possibly_compromised
from enrichers.geo import GeoRecord
from pipeline.errors import DataFileError


@pytest.fixture(scope="module")
def classifier() -> NetworkClassifier:
    return NetworkClassifier.default()


@pytest.mark.parametrize(
    ("asn", "org", "kind", "research"),
    [
        (14061, "DigitalOcean, LLC", "hosting", False),
        (16276, "OVH SAS", "hosting", False),
        (24940, "Hetzner Online GmbH", "hosting", False),
        (63949, "Akamai Technologies, Inc.", "hosting", False),
        (16509, "Amazon.com, Inc.", "hosting", False),
        (396982, "Google LLC", "hosting", False),
        (8075, "Microsoft Corporation", "hosting", False),
        (20473, "The Constant Company, LLC", "hosting", False),
        (51167, "Contabo GmbH", "hosting", False),
        (9009, "M247 Europe SRL", "hosting", False),
        (13335, "Cloudflare, Inc.", "cdn", False),
        (54113, "Fastly, Inc.", "cdn", False),
        (398324, "Censys, Inc.", "scanner", True),
        (22168, "The Shadowserver Foundation, Inc.", "scanner", True),
        (3, "Massachusetts Institute of Technology", "education", True),
        (
            680,
            "Verein zur Foerderung eines Deutschen Forschungsnetzes e.V.",
            "education",
            True,
        ),
        (7922, "Comcast Cable Communications, LLC", "isp", False),
    ],
)
def test_known_networks_get_their_kind(
    classifier: NetworkClassifier, asn: int, org: str, kind: str, research: bool
) -> None:
    result = classifier.classify(GeoRecord(asn=asn, as_org=org), tor=False)

    assert (result.kind, result.research) == (kind, research)
    assert f"AS{asn}" in result.reason


@pytest.mark.parametrize(
    ("org", "kind"),
    [
        ("Example University of Applied Sciences", "education"),
        ("Technische Hochschule Beispiel", "education"),
        ("Example Hosting Ltd", "hosting"),
        ("Example Cloud Servers", "hosting"),
        ("Example Telecom SA", "isp"),
        ("Example Broadband Networks", "isp"),
    ],
)
def test_unlisted_numbers_fall_back_to_name_patterns(
    classifier: NetworkClassifier, org: str, kind: str
) -> None:
    assert classifier.classify(GeoRecord(asn=64512, as_org=org), tor=False).kind == kind


def test_unlisted_organisation_is_unknown_and_possibly_compromised(
    classifier: NetworkClassifier,
) -> None:
    geo = GeoRecord(asn=64513, as_org="Example Hospital Foundation")

    kind = classifier.classify(geo, tor=False)

    assert kind.kind == "unknown"
    assert possibly_compromised(kind, geo) is True


def test_isp_customer_is_possibly_compromised_but_hosting_and_research_are_not(
    classifier: NetworkClassifier,
) -> None:
    isp = GeoRecord(asn=3320, as_org="Deutsche Telekom AG")
    hosting = GeoRecord(asn=14061, as_org="DigitalOcean, LLC")
    research = GeoRecord(asn=3, as_org="Massachusetts Institute of Technology")

    assert possibly_compromised(classifier.classify(isp, tor=False), isp) is True
    assert (
        possibly_compromised(classifier.classify(hosting, tor=False), hosting) is False
    )
    assert (
        possibly_compromised(classifier.classify(research, tor=False), research)
        is False
    )


def test_no_as_data_is_never_flagged_compromised(classifier: NetworkClassifier) -> None:
    geo = GeoRecord(country_iso="DE")
    kind = classifier.classify(geo, tor=False)

    assert kind.kind == "unknown"
    assert possibly_compromised(kind, geo) is False


def test_tor_exit_is_tor_even_on_a_hosting_network(
    classifier: NetworkClassifier,
) -> None:
    result = classifier.classify(
        GeoRecord(asn=24940, as_org="Hetzner Online GmbH"), tor=True
    )

    assert result == SourceKind("tor", False, "Tor exit")


def test_special_range_is_special(classifier: NetworkClassifier) -> None:
    assert classifier.classify(GeoRecord(special="cgnat"), tor=False).kind == "special"


@pytest.mark.parametrize(
    "host",
    [
        "abcdef.oast.fun",
        "x.y.interact.sh",
        "c5cf2ea9.oastify.com",
        "id.burpcollaborator.net",
        "x.L4J.token.canarytokens.com",
        "2j4ayo.dnslog.cn",
        "log4shell.huntress.com",
        "LOG4SHELL-GENERIC-abc.r.nessus.org.",
    ],
)
def test_oob_testing_callback_marks_a_hosting_source_research(
    classifier: NetworkClassifier, host: str
) -> None:
    result = classifier.classify(
        GeoRecord(asn=14061, as_org="DigitalOcean, LLC"), tor=False, oob_domains=[host]
    )

    assert result.kind == "hosting"
    assert result.research is True
    assert "out-of-band testing callback" in result.reason


@pytest.mark.parametrize(
    "host", ["oast.fun.example.com", "notoast.fun", "198.51.100.7", "evil.example"]
)
def test_lookalike_callback_hosts_do_not_mark_research(
    classifier: NetworkClassifier, host: str
) -> None:
    result = classifier.classify(GeoRecord(asn=14061), tor=False, oob_domains=[host])

    assert result.research is False


def test_detector_oob_service_marks_research_without_a_listed_domain(
    classifier: NetworkClassifier,
) -> None:
    result = classifier.classify(
        GeoRecord(asn=64512), tor=False, oob_services=["interactsh"]
    )

    assert result.research is True


def test_scanner_reverse_name_wins_over_the_hosting_as_it_rents(
    classifier: NetworkClassifier,
) -> None:
    geo = GeoRecord(asn=8075, as_org="Microsoft Corporation")

    result = classifier.classify(geo, tor=False, hostname="azpdesb29.stretchoid.com.")

    assert (result.kind, result.research) == ("scanner", True)
    assert "Stretchoid" in result.reason


def test_shipped_data_files_cite_a_source_for_every_entry() -> None:
    data = resources.files("enrichers") / "data"
    with (data / "networks.toml").open("rb") as fh:
        networks = tomllib.load(fh)["network"]
    with (data / "oob_domains.toml").open("rb") as fh:
        domains = tomllib.load(fh)["domain"]

    assert networks and domains
    assert all(entry["source"].strip() for entry in networks + domains)


def test_an_as_listed_twice_is_refused(tmp_path: Path) -> None:
    nets = tmp_path / "n.toml"
    nets.write_text(
        '[[network]]\nname="a"\nkind="hosting"\nasns=[64500]\nsource="x"\n'
        '[[network]]\nname="b"\nkind="isp"\nasns=[64500]\nsource="y"\n'
    )
    oob = tmp_path / "o.toml"
    oob.write_text('[[domain]]\nsuffix="oast.test"\nservice="t"\nsource="s"\n')

    with pytest.raises(DataFileError, match="listed twice"):
        NetworkClassifier.from_files(nets, oob)


@pytest.mark.parametrize(
    "body",
    [
        '[[network]]\nname="a"\nkind="bakery"\nsource="x"\n',
        '[[network]]\nname="a"\nkind="hosting"\nsource=""\n',
        '[[network]]\nname="a"\nkind="hosting"\nsource="x"\nextra=1\n',
        '[[network]]\nname="a"\nkind="hosting"\nsource="x"\norg=["("]\n',
        "not toml [",
    ],
)
def test_invalid_network_file_is_one_data_file_error(tmp_path: Path, body: str) -> None:
    nets = tmp_path / "n.toml"
    nets.write_text(body)
    oob = tmp_path / "o.toml"
    oob.write_text('[[domain]]\nsuffix="oast.test"\nservice="t"\nsource="s"\n')

    with pytest.raises(DataFileError):
        NetworkClassifier.from_files(nets, oob)
