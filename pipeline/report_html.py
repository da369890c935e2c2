"""``--html FILE``: the report as one self-contained page with plotly charts.

The plotly.js bundle is inlined once in the page head, so the file opens with no
network at all. No chart type that fetches data at draw time (plotly's maps load
topojson from a CDN) is used.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from pipeline import __version__
from pipeline.report import Report, is_obfuscation

#: Colours of the five levels, Safe to Critical.
LEVEL_COLOURS = ("#2e7d32", "#9e9d24", "#f9a825", "#ef6c00", "#c62828")
_CONFIG = {"displaylogo": False, "responsive": True}
_COUNTRIES_SHOWN = 15
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1rem 2rem; color: #212121; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
p.meta { color: #616161; margin-top: 0; }
table.summary { border-collapse: collapse; }
table.summary td { padding: 0.2rem 1rem 0.2rem 0; border-bottom: 1px solid #eee; }
table.summary td.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
"""


def write_html(
    report: Report, path: Path, title: str = "l4s — Log4Shell attack analysis"
) -> None:
    """Write the page to ``path`` (parents must exist)."""
    path.write_text(render_html(report, title), encoding="utf-8")


def render_html(report: Report, title: str = "l4s — Log4Shell attack analysis") -> str:
    """The whole page as text."""
    r = report
    sections = [
        ("Summary", _summary_table(r)),
        ("Attacks and unique sources per day", _chart(_days_figure(r), "days")),
        (
            "Who attacks",
            '<div class="grid">'
            + _chart(_countries_figure(r), "countries")
            + _chart(_kinds_figure(r), "kinds")
            + "</div>",
        ),
        ("Threat levels", _chart(_levels_figure(r), "levels")),
        (
            "Tor and recurring sources",
            '<div class="grid">'
            + _chart(_tor_figure(r), "tor")
            + _chart(_recurrence_figure(r), "recurrence")
            + "</div>",
        ),
        ("Payload diversification per day", _chart(_fields_figure(r), "fields")),
        (
            "Obfuscation techniques per day",
            _chart(_obfuscation_figure(r), "obfuscation"),
        ),
    ]
    body = "\n".join(
        f"<h2>{html.escape(name)}</h2>\n{content}" for name, content in sections
    )
    span = f"{r.first_day} to {r.last_day}" if r.first_day else "no attack days"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
        f"<h1>{html.escape(title)}</h1>\n"
        f'<p class="meta">Event days {html.escape(span)} · generated {generated} '
        f"by l4s {html.escape(__version__)}</p>\n{body}\n</body>\n</html>\n"
    )


def _chart(figure: go.Figure, name: str) -> str:
    figure.update_layout(
        margin={"l": 60, "r": 30, "t": 50, "b": 50}, template="plotly_white"
    )
    return str(
        figure.to_html(
            full_html=False,
            include_plotlyjs=False,
            config=_CONFIG,
            div_id=f"chart-{name}",
        )
    )


def _summary_table(r: Report) -> str:
    rows = [
        ("log records read", f"{r.lines:,}"),
        ("parsed / dead-lettered", f"{r.parsed:,} / {r.dead_letters:,}"),
        ("attacks (records reaching a JNDI lookup)", f"{r.attacks:,}"),
        ("inert attempts", f"{r.inert:,}"),
        ("unique attacking IPs", f"{r.unique_ips:,}"),
        ("attacks per IP", f"{r.attacks_per_ip:.1f}"),
        ("recurring IPs (≥ 2 days)", f"{r.recurring_ips:,}"),
        (
            "countries (top five share)",
            f"{r.country_count} ({_pct(r.top5_country_share)})",
        ),
        ("Tor exit IPs", f"{r.tor_ips:,} ({_pct(r.tor_share)})"),
        ("research / testing IPs", f"{r.research_ips:,}"),
        ("possibly compromised hosts", f"{r.compromised_ips:,}"),
        ("Dangerous + Critical", _pct(r.dangerous_critical_share)),
    ]
    cells = "".join(
        f'<tr><td>{html.escape(k)}</td><td class="n">{html.escape(v)}</td></tr>'
        for k, v in rows
    )
    return f'<table class="summary">{cells}</table>'


def _days_figure(r: Report) -> go.Figure:
    days = list(r.days)
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(
        go.Bar(
            x=days,
            y=[s.attacks for s in r.days.values()],
            name="attacks",
            marker_color="#1565c0",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=days,
            y=[s.unique_ips for s in r.days.values()],
            name="unique source IPs",
            mode="lines+markers",
            marker_color="#c62828",
        ),
        secondary_y=True,
    )
    figure.add_trace(
        go.Scatter(
            x=days,
            y=[s.attacks_per_ip for s in r.days.values()],
            name="attacks per IP",
            mode="lines+markers",
            line={"dash": "dot"},
            marker_color="#6a1b9a",
        ),
        secondary_y=True,
    )
    figure.update_layout(
        title="Attacks per day against unique sources", barmode="group"
    )
    figure.update_xaxes(type="category")
    figure.update_yaxes(title_text="attacks", secondary_y=False)
    figure.update_yaxes(
        title_text="sources / ratio",
        secondary_y=True,
        rangemode="tozero",
        tickformat=".1f",
    )
    return figure


def _countries_figure(r: Report) -> go.Figure:
    shown = list(r.countries.items())[:_COUNTRIES_SHOWN]
    shown.reverse()
    figure = go.Figure(
        go.Bar(
            x=[n for _, n in shown],
            y=[c for c, _ in shown],
            orientation="h",
            text=[_pct(n / r.unique_ips) if r.unique_ips else "" for _, n in shown],
            textposition="auto",
            marker_color="#00838f",
        )
    )
    figure.update_layout(
        title=f"Sources per country — {r.country_count} countries, "
        f"top five {_pct(r.top5_country_share)}",
        xaxis_title="unique source IPs",
    )
    return figure


def _kinds_figure(r: Report) -> go.Figure:
    ids, labels, parents, values = [], [], [], []
    for kind, group in r.network_kinds.items():
        ids.append(kind)
        labels.append(kind)
        parents.append("")
        values.append(group.unique_ips)
        for asn, stats in group.asns.items():
            ids.append(f"{kind}/{asn}")
            labels.append(stats.org or f"AS{asn}")
            parents.append(kind)
            values.append(stats.unique_ips)
    figure = go.Figure(
        go.Sunburst(
            ids=ids,
            labels=labels,
            parents=parents,
            values=values,
            branchvalues="total",
            hovertemplate="%{label}: %{value} sources<extra></extra>",
        )
    )
    figure.update_layout(title="Sources by network kind and organisation")
    return figure


def _levels_figure(r: Report) -> go.Figure:
    figure = go.Figure(
        go.Bar(
            x=list(r.levels),
            y=list(r.levels.values()),
            marker_color=list(LEVEL_COLOURS),
            text=[
                _pct(n / r.unique_ips) if r.unique_ips else ""
                for n in r.levels.values()
            ],
            textposition="auto",
        )
    )
    figure.update_layout(
        title=f"Threat levels of the sources — Dangerous + Critical "
        f"{_pct(r.dangerous_critical_share)}",
        yaxis_title="unique source IPs",
    )
    return figure


def _tor_figure(r: Report) -> go.Figure:
    figure = go.Figure(
        go.Pie(
            labels=["Tor exit", "other"],
            values=[r.tor_ips, r.unique_ips - r.tor_ips],
            hole=0.5,
            marker={"colors": ["#4a148c", "#b0bec5"]},
            sort=False,
        )
    )
    figure.update_layout(title=f"Tor exit sources — {r.tor_ips} ({_pct(r.tor_share)})")
    return figure


def _recurrence_figure(r: Report) -> go.Figure:
    figure = go.Figure(
        go.Bar(
            x=[f"{n} day{'s' if n != '1' else ''}" for n in r.days_active],
            y=list(r.days_active.values()),
            marker_color="#5d4037",
        )
    )
    figure.update_layout(
        title=f"Days active per source — {r.recurring_ips} recurring",
        yaxis_title="unique source IPs",
    )
    return figure


def _fields_figure(r: Report) -> go.Figure:
    days = list(r.days)
    names = _union(stats.fields for stats in r.days.values())
    figure = go.Figure()
    for name in names:
        shares = [
            stats.fields.get(name, 0) / stats.attacks if stats.attacks else 0.0
            for stats in r.days.values()
        ]
        figure.add_trace(go.Bar(x=days, y=shares, name=name))
    figure.update_layout(
        title="Where payloads sit: share of each day's attacks per field",
        barmode="group",
        yaxis={"tickformat": ".0%", "title": "share of attacks"},
    )
    figure.update_xaxes(type="category")
    return figure


def _obfuscation_figure(r: Report) -> go.Figure:
    days = list(r.days)
    names = [
        t for t in _union(s.techniques for s in r.days.values()) if is_obfuscation(t)
    ]
    figure = go.Figure()
    for name in names:
        figure.add_trace(
            go.Bar(
                x=days,
                y=[s.techniques.get(name, 0) for s in r.days.values()],
                name=name,
            )
        )
    figure.add_trace(
        go.Scatter(
            x=days,
            y=[s.techniques.get("plain", 0) for s in r.days.values()],
            name="plain lookup (no obfuscation)",
            mode="lines+markers",
            line={"color": "#424242", "dash": "dash"},
        )
    )
    figure.update_layout(
        title="Obfuscation techniques per day (attacks using each)",
        barmode="stack",
        yaxis_title="attacks",
    )
    figure.update_xaxes(type="category")
    return figure


def _union(counters: Iterable[dict[str, int]]) -> list[str]:
    """Names across days, most frequent overall first, ties by name."""
    total: dict[str, int] = {}
    for counts in counters:
        for name, n in counts.items():
            total[name] = total.get(name, 0) + n
    return [
        name for name, _ in sorted(total.items(), key=lambda item: (-item[1], item[0]))
    ]


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"
