"""The l4s detection engine: evaluates field values the way Log4j would, no I/O."""

from __future__ import annotations

from detectors.engine import analyze, analyze_fields
from detectors.model import TECHNIQUES, FieldVerdict, Lookup, RecordVerdict
from detectors.prefilter import find_candidates, may_contain_lookup

#: Goes into every detection so a finding can say which engine produced it.
ENGINE_VERSION = "1.0.0"

__all__ = [
    "ENGINE_VERSION",
    "TECHNIQUES",
    "FieldVerdict",
    "Lookup",
    "RecordVerdict",
    "analyze",
    "analyze_fields",
    "find_candidates",
    "may_contain_lookup",
]
