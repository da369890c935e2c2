"""The five-level threat rating: evidence about one source in, level and reasons out."""

from __future__ import annotations

import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Final

import msgspec

from pipeline.errors import DataFileError

LEVELS: Final = ("Safe", "Low", "Moderate", "Dangerous", "Critical")


class Evidence(msgspec.Struct, frozen=True, kw_only=True):
    """What the pipeline has seen of one source address.

    Args:
        hits: attack records (a lookup that reaches a remote target).
        inert_hits: attack-shaped records that cannot reach a lookup.
        days: distinct UTC days (event time) with any of those.
        techniques: obfuscation techniques used across the source's payloads.
        obfuscated: any payload needed deobfuscation to show its lookup.
        exfil: a payload tries to leak a victim value (environment, system props).
        commands: a payload carries shell commands (exploit-kit paths).
        oob: a payload calls back to an out-of-band testing service.
        tor: the source is a Tor exit.
        kind: network kind from the classifier (``hosting``, ``isp``, ...).
        research: the classifier marked it research/testing.
        compromised: the "neither hosting nor research" flag.
        reputation: optional external score 0..100.

    Example:
        >>> ThreatModel.default().rate(Evidence(hits=0, inert_hits=1, days=1,
        ...     techniques=frozenset(), obfuscated=False, exfil=False,
        ...     commands=False, oob=False, tor=False, kind="isp",
        ...     research=False, compromised=True)).level
        'Low'
    """

    hits: int
    inert_hits: int
    days: int
    techniques: frozenset[str]
    obfuscated: bool
    exfil: bool
    commands: bool
    oob: bool
    tor: bool
    kind: str
    research: bool
    compromised: bool
    reputation: float | None = None


class Rating(msgspec.Struct, frozen=True):
    """A level, the score behind it and the reasons, strongest first.

    Args:
        level: ``Safe``, ``Low``, ``Moderate``, ``Dangerous`` or ``Critical``.
        score: 0..100, rounded to one decimal.
        reasons: short human strings, e.g. ``attacked on 3 days``.

    Example:
        >>> Rating("Low", 10.0, ("1 inert attempt",)).level
        'Low'
    """

    level: str
    score: float
    reasons: tuple[str, ...]


class Levels(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Lowest score of each level above Safe."""

    Low: float = 10.0
    Moderate: float = 30.0
    Dangerous: float = 50.0
    Critical: float = 70.0


class Weights(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Points per piece of evidence; see ``enrichers/data/threat.toml``."""

    attack: float = 30.0
    attack_each_more: float = 2.0
    attack_more_cap: float = 10.0
    inert: float = 10.0
    inert_each_more: float = 1.0
    inert_more_cap: float = 5.0
    day_each_more: float = 12.0
    day_more_cap: float = 36.0
    obfuscated: float = 10.0
    technique_each: float = 2.0
    technique_cap: float = 8.0
    exfil: float = 15.0
    commands: float = 20.0
    tor: float = 8.0
    hosting: float = 5.0
    research: float = -15.0
    reputation: float = 0.3


class _ModelFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    levels: Levels = Levels()
    weights: Weights = Weights()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class ThreatModel:
    """Score evidence with the weights of one documented data file.

    Args:
        levels: score thresholds, strictly increasing.
        weights: points per piece of evidence; all non-negative except
            ``research`` (at most 0), so the rating is monotone in evidence.

    Example:
        >>> model = ThreatModel.default()
        >>> model.thresholds[-1]
        ('Critical', 70.0)
    """

    def __init__(self, levels: Levels, weights: Weights) -> None:
        bounds = [levels.Low, levels.Moderate, levels.Dangerous, levels.Critical]
        if any(not math.isfinite(b) for b in bounds) or bounds != sorted(set(bounds)):
            raise DataFileError(f"threat levels must increase strictly: {bounds}")
        for name in Weights.__struct_fields__:
            value = getattr(weights, name)
            if not math.isfinite(value):
                raise DataFileError(f"threat weight {name} is not a number")
            if name == "research":
                if value > 0:
                    raise DataFileError("threat weight research must be 0 or negative")
            elif value < 0:
                raise DataFileError(
                    f"threat weight {name} is negative; "
                    "more evidence must never lower a rating"
                )
        self.levels = levels
        self.weights = weights
        self.thresholds: tuple[tuple[str, float], ...] = tuple(
            zip(LEVELS[1:], bounds, strict=True)
        )

    @classmethod
    def default(cls) -> ThreatModel:
        """The model of the shipped ``enrichers/data/threat.toml``."""
        path = resources.files("enrichers") / "data" / "threat.toml"
        with path.open("rb") as fh:
            return cls._from_data(tomllib.load(fh), path)

    @classmethod
    def from_file(cls, path: Path) -> ThreatModel:
        """An operator's model file; keys it leaves out keep their default.

        Raises:
            DataFileError: missing, not TOML, an unknown key, or a weight that
                would let more evidence lower a rating.
        """
        try:
            with Path(path).open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise DataFileError(f"threat model file {path} does not exist") from None
        except OSError as exc:
            raise DataFileError(
                f"cannot read threat model file {path}: {exc.strerror}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise DataFileError(
                f"threat model file {path} is not valid TOML: {exc}"
            ) from None

        return cls._from_data(data, path)

    @classmethod
    def _from_data(cls, data: Any, path: object) -> ThreatModel:
        try:
            parsed = msgspec.convert(data, _ModelFile)
        except msgspec.ValidationError as exc:
            raise DataFileError(f"threat model file {path}: {exc}") from None

        return cls(parsed.levels, parsed.weights)

    def level_of(self, score: float) -> str:
        """The level a score falls in."""
        level = LEVELS[0]
        for name, bound in self.thresholds:
            if score >= bound:
                level = name

        return level

    def rate(self, evidence: Evidence) -> Rating:
        """Score ``evidence``; pure and deterministic."""
        w = self.weights
        parts: list[tuple[float, str]] = []
        if evidence.hits > 0:
            more = min(w.attack_more_cap, w.attack_each_more * (evidence.hits - 1))
            parts.append(
                (w.attack + more, f"{_plural(evidence.hits, 'working JNDI lookup')}")
            )
        if evidence.inert_hits > 0:
            more = min(w.inert_more_cap, w.inert_each_more * (evidence.inert_hits - 1))
            parts.append(
                (w.inert + more, _plural(evidence.inert_hits, "inert attempt"))
            )
        if evidence.days > 1:
            more = min(w.day_more_cap, w.day_each_more * (evidence.days - 1))
            parts.append((more, f"attacked on {evidence.days} days"))
        if evidence.obfuscated:
            parts.append((w.obfuscated, "obfuscated payload"))
        if evidence.techniques:
            points = min(w.technique_cap, w.technique_each * len(evidence.techniques))
            parts.append(
                (points, _plural(len(evidence.techniques), "obfuscation technique"))
            )
        if evidence.exfil:
            parts.append((w.exfil, "tries to exfiltrate secrets"))
        if evidence.commands:
            parts.append((w.commands, "command/dropper payload"))
        # Where it comes from only matters once it has done something.
        active = evidence.hits > 0 or evidence.inert_hits > 0
        if evidence.tor and active:
            parts.append((w.tor, "Tor exit"))
        if evidence.kind == "hosting" and active:
            parts.append((w.hosting, "hosting network"))
        if evidence.reputation is not None:
            rep = max(0.0, min(100.0, evidence.reputation))
            parts.append((w.reputation * rep, f"external reputation {rep:g}/100"))
        score = sum(points for points, _ in parts)
        if evidence.research or evidence.oob:
            score += w.research
            why = "out-of-band test callback" if evidence.oob else "research network"
            parts.append((w.research, f"research/testing ({why})"))
        score = round(max(0.0, min(100.0, score)), 1)
        # Strongest first; ties keep the order above. Positive parts only, then
        # the research note, so a reader sees why it is high before why it is not.
        ordered = sorted((p for p in parts if p[0] > 0), key=lambda p: -p[0])
        reasons = tuple(text for _, text in ordered)
        reasons += tuple(text for points, text in parts if points <= 0)
        if evidence.compromised:
            reasons += ("possibly compromised host",)

        return Rating(self.level_of(score), score, reasons)
