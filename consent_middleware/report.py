"""Reading the consent log for its operator (SPEC §5): export, statistics and the HTML report.

Everything here works on an iterable of :class:`~consent_middleware.log.LogEntry` read oldest first,
streamed: an export holds one entry at a time; the statistics hold one small record per visitor
(per visitor and day for the daily figures), never the entries themselves.

How decisions are counted (the README says the same): a visitor (a consent id) who decided several
times counts once, with their **latest** decision in the period. The per-category, per-country and
per-language figures use each visitor's latest decision in the whole period; the per-day figures use
each visitor's latest decision on that day, so a visitor who changed their mind on two days counts on
both. A withdrawal is a decision that grants nothing. Days are UTC days. The acceptance rate of a
category is the share of those decisions that granted it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import IO, TYPE_CHECKING, Any, Final, Literal

from .log.base import METHODS, LogEntry, format_time
from .log.store import COLUMNS
from .registry import DEFAULT_CATEGORIES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "BREAKDOWNS",
    "EXPORT_FIELDS",
    "STATS_DEFINITION",
    "ReportUnavailable",
    "Stats",
    "Tally",
    "compute_stats",
    "entry_record",
    "export_csv",
    "export_jsonl",
    "parse_since",
    "render_report",
    "stats_json",
    "stats_table",
]

#: Every field of a stored entry, in the order of the export's columns: the store's own order.
EXPORT_FIELDS: Final = COLUMNS
STATS_DEFINITION: Final = (
    "each visitor (consent id) counts once, with their latest decision in the period "
    "(per day: their latest decision that day); a withdrawal grants nothing; days are UTC"
)
BREAKDOWNS: Final = ("category", "day", "country", "language")
Breakdown = Literal["category", "day", "country", "language"]
#: The optional categories every site has unless it renamed them: shown even when nobody granted one.
DEFAULT_OPTIONAL: Final = tuple(
    category.name for category in DEFAULT_CATEGORIES if category.name != "necessary"
)
UNKNOWN: Final = "(unknown)"
#: Charts show the busiest countries and languages; the tables under them list all.
CHART_ROWS: Final = 15
#: Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
REPORT_INSTALL_HINT: Final = "pip install consent-middleware[report]"


class ReportUnavailable(RuntimeError):
    """The HTML report needs matplotlib, an optional extra."""


def parse_since(text: str) -> datetime:
    """``YYYY-MM-DD`` (the start of that UTC day) or an ISO 8601 time (UTC unless it says otherwise)."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- export --------------------------------------------------------------------------------------------


def entry_record(entry: LogEntry) -> dict[str, Any]:
    """An entry as JSON values: the time as fixed-width UTC text, the categories as a list."""
    record: dict[str, Any] = {name: getattr(entry, name) for name in EXPORT_FIELDS}
    record["time"] = format_time(entry.time)
    record["categories"] = list(entry.categories)
    return record


def _counted(
    entries: Iterable[LogEntry], progress: Callable[[int], None] | None, every: int
) -> Iterator[LogEntry]:
    count = 0
    for entry in entries:
        yield entry
        count += 1
        if progress is not None and count % every == 0:
            progress(count)
    if progress is not None and count % every:
        progress(count)


#: What makes a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def export_csv(
    entries: Iterable[LogEntry],
    out: IO[str],
    *,
    progress: Callable[[int], None] | None = None,
    every: int = 10_000,
) -> int:
    """CSV with a header row, one entry per row: categories space-separated, ``None`` as an empty cell.

    A text cell that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first)
    gets a leading ``'``: the browser family comes from the visitor's user agent."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    count = 0
    for entry in _counted(entries, progress, every):
        record = entry_record(entry)
        record["categories"] = " ".join(entry.categories)
        writer.writerow([_csv_cell(record[name]) for name in EXPORT_FIELDS])
        count += 1
    return count


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def export_jsonl(
    entries: Iterable[LogEntry],
    out: IO[str],
    *,
    progress: Callable[[int], None] | None = None,
    every: int = 10_000,
) -> int:
    """JSON lines: one object per entry, with every field (``null`` where there is no value)."""
    count = 0
    for entry in _counted(entries, progress, every):
        out.write(json.dumps(entry_record(entry), ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


# --- statistics ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Counted decisions of one group (a day, a country, a language, or all of them)."""

    key: str | None
    decisions: int = 0
    granted: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)

    def add(self, categories: tuple[str, ...], method: str) -> None:
        self.decisions += 1
        self.granted.update(categories)
        self.methods[method] += 1

    def rate(self, category: str) -> float | None:
        """The share of this group's decisions that granted ``category`` (None without decisions)."""
        return self.granted[category] / self.decisions if self.decisions else None


@dataclass(frozen=True, slots=True)
class Stats:
    since: datetime | None
    first: datetime | None  # the oldest entry read
    last: datetime | None  # the newest entry read
    entries: int  # entries read
    categories: tuple[str, ...]
    overall: Tally
    by_day: tuple[Tally, ...]
    by_country: tuple[Tally, ...]
    by_language: tuple[Tally, ...]

    @property
    def visitors(self) -> int:
        return self.overall.decisions


# (time, categories, method, country, language) of one counted decision
_Record = tuple[datetime, tuple[str, ...], str, str | None, str]


def compute_stats(
    entries: Iterable[LogEntry], *, since: datetime | None = None, categories: Sequence[str] = ()
) -> Stats:
    """Figures over ``entries`` (oldest first) at or after ``since``; see the module docstring."""
    latest: dict[str, _Record] = {}
    daily: dict[tuple[date, str], _Record] = {}
    interned: dict[object, Any] = {}  # a few distinct values repeated millions of times: keep one copy
    seen: set[str] = set()
    count = 0
    first: datetime | None = None
    last: datetime | None = None
    for entry in entries:
        moment = entry.time.astimezone(UTC)
        if since is not None and moment < since:
            continue
        count += 1
        first = moment if first is None or moment < first else first
        last = moment if last is None or moment > last else last
        granted = interned.setdefault(entry.categories, entry.categories)
        seen.update(granted)
        record: _Record = (
            moment,
            granted,
            interned.setdefault(entry.method, entry.method),
            interned.setdefault(entry.country, entry.country),
            interned.setdefault(entry.language, entry.language),
        )
        # Oldest first, so on equal times the entry read later (the higher seq) is the later decision.
        previous = latest.get(entry.consent_id)
        if previous is None or previous[0] <= moment:
            latest[entry.consent_id] = record
        day_key = (moment.date(), entry.consent_id)
        previous = daily.get(day_key)
        if previous is None or previous[0] <= moment:
            daily[day_key] = record

    overall = Tally(None)
    countries: dict[str | None, Tally] = {}
    languages: dict[str | None, Tally] = {}
    for _, granted, method, country, language in latest.values():
        overall.add(granted, method)
        countries.setdefault(country, Tally(country)).add(granted, method)
        languages.setdefault(language, Tally(language)).add(granted, method)
    days: dict[date, Tally] = {}
    for (day, _), (_, granted, method, _, _) in daily.items():
        days.setdefault(day, Tally(day.isoformat())).add(granted, method)

    listed = tuple(dict.fromkeys([*(categories or DEFAULT_OPTIONAL), *sorted(seen)]))
    return Stats(
        since=since,
        first=first,
        last=last,
        entries=count,
        categories=listed,
        overall=overall,
        by_day=tuple(days[day] for day in sorted(days)),
        by_country=_busiest(countries.values()),
        by_language=_busiest(languages.values()),
    )


def _busiest(tallies: Iterable[Tally]) -> tuple[Tally, ...]:
    return tuple(sorted(tallies, key=lambda tally: (-tally.decisions, tally.key is None, tally.key or "")))


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _day(moment: datetime | None) -> str | None:
    return None if moment is None else moment.date().isoformat()


def _period(stats: Stats) -> str:
    start = _day(stats.since) or _day(stats.first)
    end = _day(stats.last)
    if start is None:
        return "no entries"
    return f"{start} to {end or start} (UTC)"


def stats_json(stats: Stats, by: Breakdown | None = None) -> dict[str, Any]:
    """The figures as JSON: counts and rates (fractions, 4 decimals); ``by`` keeps one breakdown only."""

    def group(tally: Tally, name: str) -> dict[str, Any]:
        return {
            name: tally.key,
            "decisions": tally.decisions,
            "methods": {method: tally.methods[method] for method in METHODS},
            "granted": {category: tally.granted[category] for category in stats.categories},
            "rates": {category: _rate(tally.rate(category)) for category in stats.categories},
        }

    document: dict[str, Any] = {
        "period": {
            "since": None if stats.since is None else format_time(stats.since),
            "first": None if stats.first is None else format_time(stats.first),
            "last": None if stats.last is None else format_time(stats.last),
        },
        "counting": STATS_DEFINITION,
        "entries": stats.entries,
        "decisions": stats.overall.decisions,
        "methods": {method: stats.overall.methods[method] for method in METHODS},
        "categories": list(stats.categories),
    }
    sections: dict[str, Callable[[], object]] = {
        "category": lambda: [
            {
                "category": category,
                "granted": stats.overall.granted[category],
                "decisions": stats.overall.decisions,
                "rate": _rate(stats.overall.rate(category)),
            }
            for category in stats.categories
        ],
        "day": lambda: [group(tally, "day") for tally in stats.by_day],
        "country": lambda: [group(tally, "country") for tally in stats.by_country],
        "language": lambda: [group(tally, "language") for tally in stats.by_language],
    }
    for name, build in sections.items():
        if by is None or by == name:
            document[f"by_{name}"] = build()
    return document


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = []
    for number, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(width) if index == 0 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


def stats_table(stats: Stats, by: Breakdown | None = None) -> str:
    """The figures as readable text tables: every breakdown, or only ``by``."""
    methods = ", ".join(f"{method} {stats.overall.methods[method]}" for method in METHODS)
    lines = [
        f"Consent log, {_period(stats)}",
        f"{stats.entries} entries read, {stats.overall.decisions} decisions counted",
        f"(counting: {STATS_DEFINITION})",
        f"Methods: {methods}",
    ]
    if by is None or by == "category":
        lines += ["", "Acceptance rate per category"]
        lines += _table(
            ("category", "granted", "decisions", "rate"),
            [
                (
                    category,
                    str(stats.overall.granted[category]),
                    str(stats.overall.decisions),
                    _percent(stats.overall.rate(category)),
                )
                for category in stats.categories
            ],
        )
    sections = (("day", "per day", stats.by_day), ("country", "per country", stats.by_country))
    for name, title, tallies in (*sections, ("language", "per language", stats.by_language)):
        if by is not None and by != name:
            continue
        lines += ["", f"Acceptance rate {title}"]
        lines += _table(
            (name, "decisions", *stats.categories),
            [
                (
                    tally.key or UNKNOWN,
                    str(tally.decisions),
                    *(
                        f"{_percent(tally.rate(category))} ({tally.granted[category]})"
                        for category in stats.categories
                    ),
                )
                for tally in tallies
            ],
        )
    return "\n".join(lines) + "\n"


# --- HTML report ---------------------------------------------------------------------------------------


def _chart_label(text: str | None, limit: int = 24) -> str:
    label = text or UNKNOWN
    return label if len(label) <= limit else label[: limit - 1] + "\u2026"


class _Charts:
    """matplotlib figures drawn straight onto the Agg canvas (no pyplot, no global state, no display)."""

    def __init__(self) -> None:
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise ReportUnavailable(f"the HTML report needs matplotlib: {REPORT_INSTALL_HINT}") from None
        import matplotlib

        self._figure_class = Figure
        self._canvas_class = FigureCanvasAgg
        self._rc_context = matplotlib.rc_context

    def png(self, draw: Callable[[Figure], None], *, height: float = 3.2) -> str:
        """Draw on a new figure and return it as a ``data:image/png;base64,...`` URL."""
        style = self._rc_context(
            {
                "text.parse_math": False,  # a "$" in a country or language is text, not TeX
                "font.size": 9,
                "axes.spines.top": False,
                "axes.spines.right": False,
                "axes.grid": True,
                "grid.alpha": 0.3,
            }
        )
        with style, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a glyph missing from the bundled font is not worth a failure
            figure = self._figure_class(figsize=(8.0, height), dpi=100, layout="constrained")
            self._canvas_class(figure)
            draw(figure)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", metadata={"Software": None})
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _day_axis(axes: Axes, days: Sequence[date]) -> list[int]:
    """Days as whole numbers from the first (gaps stay gaps), with at most ten labelled ticks."""
    origin = days[0].toordinal()
    positions = [day.toordinal() - origin for day in days]
    step = max(1, -(-(positions[-1] + 1) // 10))
    ticks = list(range(0, positions[-1] + 1, step))
    axes.set_xticks(ticks, [date.fromordinal(origin + tick).isoformat() for tick in ticks])
    axes.set_xlim(-0.6, positions[-1] + 0.6)
    for label in axes.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")
    return positions


def _days_of(stats: Stats) -> list[date]:
    return [date.fromisoformat(tally.key or "") for tally in stats.by_day]


def _rates_over_time(stats: Stats) -> Callable[[Figure], None]:
    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        positions = _day_axis(axes, _days_of(stats))
        for index, category in enumerate(stats.categories):
            values = [100 * (tally.rate(category) or 0.0) for tally in stats.by_day]
            axes.plot(positions, values, marker="o" if len(positions) < 60 else "", markersize=3,
                      color=PALETTE[index % len(PALETTE)], label=_chart_label(category))  # fmt: skip
        axes.set_ylim(-2, 102)
        axes.set_ylabel("accepted (% of decisions)")
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)

    return draw


def _decisions_over_time(stats: Stats) -> Callable[[Figure], None]:
    def draw(figure: Figure) -> None:
        from matplotlib.ticker import MaxNLocator

        axes = figure.add_subplot()
        positions = _day_axis(axes, _days_of(stats))
        bottom = [0] * len(positions)
        for index, method in enumerate(METHODS):
            counts = [tally.methods[method] for tally in stats.by_day]
            axes.bar(positions, counts, bottom=bottom, color=PALETTE[index], label=method, width=0.8)
            bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel("decisions")
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)

    return draw


def _per_category(stats: Stats) -> Callable[[Figure], None]:
    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        values = [100 * (stats.overall.rate(category) or 0.0) for category in stats.categories]
        positions = list(range(len(stats.categories)))
        bars = axes.barh(positions, values, color=[PALETTE[i % len(PALETTE)] for i in positions])
        axes.bar_label(bars, labels=[f"{value:.1f}%" for value in values], padding=3)
        axes.set_yticks(positions, [_chart_label(category) for category in stats.categories])
        axes.invert_yaxis()
        axes.set_xlim(0, 105)
        axes.set_xlabel("accepted (% of decisions)")

    return draw


def _per_group(stats: Stats, tallies: Sequence[Tally]) -> Callable[[Figure], None]:
    def draw(figure: Figure) -> None:
        axes = figure.add_subplot()
        shown = list(tallies[:CHART_ROWS])
        width = 0.8 / max(len(stats.categories), 1)
        for index, category in enumerate(stats.categories):
            positions = [row + index * width for row in range(len(shown))]
            values = [100 * (tally.rate(category) or 0.0) for tally in shown]
            axes.barh(positions, values, height=width, color=PALETTE[index % len(PALETTE)],
                      label=_chart_label(category))  # fmt: skip
        centre = (len(stats.categories) - 1) * width / 2
        axes.set_yticks(
            [row + centre for row in range(len(shown))],
            [f"{_chart_label(tally.key)} ({tally.decisions})" for tally in shown],
        )
        axes.invert_yaxis()
        axes.set_xlim(0, 100)
        axes.set_xlabel("accepted (% of decisions)")
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)

    return draw


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _html_table(caption: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f'<th scope="col">{_e(cell)}</th>' for cell in header)
    body = "".join(
        "<tr>" + "".join(
            f'<th scope="row">{_e(cell)}</th>' if index == 0 else f"<td>{_e(cell)}</td>"
            for index, cell in enumerate(row)
        ) + "</tr>"
        for row in rows
    )  # fmt: skip
    return (
        f"<table><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _figure(source: str, alt: str, caption: str) -> str:
    return f'<figure><img src="{_e(source)}" alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _group_rows(stats: Stats, tallies: Sequence[Tally]) -> list[list[object]]:
    return [
        [
            tally.key or UNKNOWN,
            tally.decisions,
            *(f"{_percent(tally.rate(c))} ({tally.granted[c]})" for c in stats.categories),
        ]
        for tally in tallies
    ]


STYLE: Final = """
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}
figure{margin:1rem 0}img{max-width:100%;height:auto}figcaption{color:#555;font-size:.9rem}
table{border-collapse:collapse;margin:.8rem 0;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #e5e5e5;padding:.25rem .7rem;text-align:right}
th[scope=row],thead th:first-child{text-align:left}
details{margin:.5rem 0}.note{color:#555}
"""


def render_report(stats: Stats, *, source: str, generated: datetime | None = None) -> str:
    """One self-contained HTML page: summary, charts (PNG in ``data:`` URLs) and the figures as tables.

    ``source`` names the log (already masked by the caller). Raises :class:`ReportUnavailable` without
    matplotlib.
    """
    charts = _Charts()
    generated = generated or datetime.now(UTC)
    period = _period(stats)
    names = ", ".join(stats.categories)
    parts: list[str] = []
    methods = "".join(f"<dt>{_e(method)}</dt><dd>{stats.overall.methods[method]}</dd>" for method in METHODS)
    parts.append(
        f"<h1>Consent report</h1>"
        f"<dl><dt>Period</dt><dd>{_e(period)}</dd>"
        f"<dt>Log</dt><dd>{_e(source)}</dd>"
        f"<dt>Entries read</dt><dd>{stats.entries}</dd>"
        f"<dt>Decisions counted</dt><dd>{stats.overall.decisions}</dd>{methods}"
        f"<dt>Generated</dt><dd>{_e(format_time(generated))}</dd></dl>"
        f'<p class="note">Counting: {_e(STATS_DEFINITION)}. The acceptance rate of a category is the '
        f"share of the counted decisions that granted it.</p>"
    )
    if not stats.overall.decisions:
        parts.append("<p>No decisions in this period.</p>")
    else:
        parts.append("<h2>Acceptance per category</h2>")
        parts.append(
            _figure(
                charts.png(_per_category(stats), height=0.5 + 0.45 * len(stats.categories)),
                f"Bar chart of the acceptance rate per category ({names}) over {period}; "
                f"the figures are in the table below.",
                "Share of the counted decisions that granted each category.",
            )
        )
        parts.append(
            _html_table(
                "Acceptance per category",
                ("category", "granted", "decisions", "rate"),
                [
                    (c, stats.overall.granted[c], stats.overall.decisions, _percent(stats.overall.rate(c)))
                    for c in stats.categories
                ],
            )
        )
        parts.append("<h2>Over time</h2>")
        parts.append(
            _figure(
                charts.png(_rates_over_time(stats)),
                f"Line chart of the daily acceptance rate of {names} from {period}, one line per category; "
                f"the figures are in the table below.",
                "Acceptance rate per day and category (each visitor's latest decision that day).",
            )
        )
        parts.append(
            _figure(
                charts.png(_decisions_over_time(stats), height=2.6),
                f"Stacked bar chart of the decisions per day by method ({', '.join(METHODS)}) from {period}.",
                "Decisions per day, by method.",
            )
        )
        parts.append(
            "<details><summary>Figures per day</summary>"
            + _html_table(
                "Acceptance rate per day",
                ("day", "decisions", *stats.categories),
                _group_rows(stats, stats.by_day),
            )
            + "</details>"
        )
        groups = (("country", "countries", stats.by_country), ("language", "languages", stats.by_language))
        for title, plural, tallies in groups:
            shown = min(len(tallies), CHART_ROWS)
            parts.append(f"<h2>Per {title}</h2>")
            parts.append(
                _figure(
                    charts.png(
                        _per_group(stats, tallies),
                        height=1.0 + 0.32 * shown * max(len(stats.categories), 1) ** 0.5,
                    ),
                    f"Bar chart of the acceptance rate of {names} per {title}, for the {shown} {plural} "
                    f"with the most decisions; the figures for all are in the table below.",
                    f"Acceptance rate per {title} (decisions in brackets)"
                    + (f", the {CHART_ROWS} busiest" if len(tallies) > CHART_ROWS else "")
                    + ".",
                )
            )
            parts.append(
                _html_table(
                    f"Acceptance rate per {title}",
                    (title, "decisions", *stats.categories),
                    _group_rows(stats, tallies),
                )
            )
    title = f"Consent report, {period}"
    # The CSP keeps the file inert whatever it holds: no script runs, nothing is fetched.
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(parts)
        + "\n</main>\n</body>\n</html>\n"
    )
