"""Event-time reading for every format, and the policy for times that make no sense.

A record's time becomes epoch seconds UTC. Absent times (``-``, empty, missing
key) are None: the stage substitutes the broker timestamp and counts it. A time
that is present but unreadable, or outside [1990-01-01, now + max_future_seconds],
raises ``PoisonRecord("bad_timestamp")``, or is treated as absent when the
``bad_timestamp`` setting is ``broker``.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pipeline.errors import PoisonRecord

if TYPE_CHECKING:
    from pipeline.formats.settings import FormatSettings

#: Earliest event time accepted: 1990-01-01T00:00:00Z, before the web.
EARLIEST = 631_152_000.0

_MONTHS = {
    m.encode(): i
    for i, m in enumerate(
        (
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        ),
        1,
    )
}
_CLF = re.compile(
    rb"(\d{1,2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?"
    rb"(?: ?([+-])(\d{2}):?(\d{2}))?"
)
_NUMBER = re.compile(r"[+-]?\d{1,20}(\.\d{1,12})?")


class Clock:
    """Reads event times in the configured zone and applies the sanity range.

    Args:
        settings: supplies ``timezone``, ``bad_timestamp`` and ``max_future_seconds``.

    Example:
        >>> Clock(FormatSettings()).iso("2021-12-10T14:25:38Z")  # doctest: +SKIP
        1639146338.0
    """

    def __init__(self, settings: FormatSettings) -> None:
        self.zone: tzinfo = ZoneInfo(settings.timezone)
        self.lenient = settings.bad_timestamp == "broker"
        self.max_future = settings.max_future_seconds

    def bad(self, detail: str) -> None:
        """Dead-letter a bad time, or accept the record without one (lenient)."""
        if not self.lenient:
            raise PoisonRecord("bad_timestamp", detail)

    def checked(self, seconds: float) -> float | None:
        """``seconds`` when inside the sane range, else per the policy."""
        if not EARLIEST <= seconds <= time.time() + self.max_future:
            self.bad("event time outside 1990..now+1d")
            return None
        return seconds

    def epoch(self, value: Any) -> float | None:
        """Epoch time as a number or numeric string; s, ms, µs or ns by magnitude."""
        if value is None or value in ("", "-"):
            return None
        if isinstance(value, bool):
            self.bad("event time is a boolean")
            return None
        if isinstance(value, str):
            if _NUMBER.fullmatch(value) is None:
                self.bad("event time is not a number")
                return None
            value = float(value)
        if not isinstance(value, (int, float)) or math.isnan(value):
            self.bad("event time is not a number")
            return None
        return self.checked(_from_scaled(float(value)))

    def iso(self, value: Any) -> float | None:
        """ISO 8601 / RFC 3339 text (offset optional: the zone applies), or epoch."""
        if value is None or value in ("", "-"):
            return None
        if not isinstance(value, str):
            return self.epoch(value)
        if _NUMBER.fullmatch(value):
            return self.epoch(value)
        if len(value) > 64:
            self.bad("event time text too long")
            return None
        try:
            moment = datetime.fromisoformat(
                value.replace("Z", "+00:00").replace("z", "+00:00")
            )
        except ValueError:
            self.bad("event time is not ISO 8601")
            return None
        return self._moment(moment)

    def clf(self, value: bytes | str) -> float | None:
        """Access-log time ``10/Oct/2000:13:55:36 -0700`` (offset optional)."""
        raw = value.encode("utf-8", "replace") if isinstance(value, str) else value
        if raw in (b"", b"-"):
            return None
        match = _CLF.fullmatch(raw.strip())
        if match is None or match.group(2) not in _MONTHS:
            self.bad("unreadable access-log time")
            return None
        day, month, year, hh, mm, ss, frac, sign, oh, om = match.groups()
        zone: tzinfo = self.zone
        try:
            if sign is not None:
                if int(om) >= 60:
                    raise ValueError("offset minutes")
                offset = timedelta(hours=int(oh), minutes=int(om))
                zone = timezone(-offset if sign == b"-" else offset)
            moment = datetime(
                int(year),
                _MONTHS[month],
                int(day),
                int(hh),
                int(mm),
                int(ss),
                tzinfo=zone,
            )
        except ValueError:
            self.bad("access-log time out of calendar")
            return None
        seconds = self._moment(moment)
        if seconds is not None and frac:
            seconds += float(frac)
        return seconds

    def strptime(self, value: str, pattern: str) -> float | None:
        """Time text in a ``strftime`` pattern (Apache ``%{...}t``, mapping files)."""
        if value in ("", "-"):
            return None
        try:
            moment = datetime.strptime(value[:128], pattern)
        except ValueError:
            self.bad("event time does not match the configured pattern")
            return None
        return self._moment(moment)

    def parts(self, date: str, clock: str, zone: tzinfo = UTC) -> float | None:
        """W3C ``date`` and ``time`` fields, which the W3C format defines as UTC."""
        if date in ("", "-") and clock in ("", "-"):
            return None
        if len(date) > 16 or len(clock) > 24:
            self.bad("event time text too long")
            return None
        try:
            moment = datetime.fromisoformat(f"{date}T{clock}")
        except ValueError:
            self.bad("event time is not ISO 8601")
            return None
        return self._moment(moment.replace(tzinfo=zone))

    def _moment(self, moment: datetime) -> float | None:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        try:
            seconds = moment.astimezone(UTC).timestamp()
        except (OverflowError, ValueError):
            self.bad("event time out of range")
            return None
        return self.checked(seconds)


def _from_scaled(number: float) -> float:
    """Seconds from an epoch number in s, ms, µs or ns, judged by magnitude."""
    magnitude = abs(number)
    if magnitude >= 1e17:
        return number / 1e9
    if magnitude >= 1e14:
        return number / 1e6
    if magnitude >= 1e11:
        return number / 1e3
    return number
