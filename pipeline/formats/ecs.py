"""JSON lines with Elastic Common Schema fields, nested or dotted.

The parser and its JSON helpers live with the other JSON shapes; this module
keeps the names importable from where they started.
"""

from __future__ import annotations

from pipeline.formats.jsonformats import EcsParser
from pipeline.formats.jsonmap import decode_object, headers_of, lookup

__all__ = ["EcsParser", "decode_object", "headers_of", "lookup"]
