"""The Findings report: one self-contained HTML file (and the same as JSON) for a meeting.

The HTML holds the sentences, a chart per finding (Vega-Lite drawn to SVG by Vega's own converter,
vl-convert, inline: no script, font or style is fetched), the prompts, model, settings, versions
and the link that reopens the Findings page. Every number a finding quotes is written in a table
beside its sentence with `data-number` = its name, as in the JSON.
"""

from __future__ import annotations

import html
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import urlencode

import altair as alt
import pandas as pd

from . import charts
from .findings import Finding

PACKAGES = ("torch", "transformers", "streamlit", "altair", "vl-convert-python")
# belt and braces: even a browser asked to fetch something from this page may not
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STATUS_WORDS = {"ok": "", "weak": "Weak evidence", "cannot": "Could not run"}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:980px;margin:2em auto;
padding:0 1em;color:#1f2328;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
.prompts{display:grid;grid-template-columns:1fr 1fr;gap:1em}.prompts pre{white-space:pre-wrap;
background:#f6f8fa;padding:.6em;border-radius:6px}.caveat{color:#57606a;font-size:.9em}
.status{font-weight:600;color:#9a6700}table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #d0d7de;padding:.2em .5em;text-align:left}.meta{font-size:.85em;color:#57606a}
"""


def versions() -> dict[str, str]:
    """The versions of twinlens, Python and the packages a result depends on."""
    import twinlens

    found = {"twinlens": twinlens.__version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def findings_link(query: dict[str, str]) -> str:
    """The app's link that reopens the Findings page for this request."""
    return "/findings?" + urlencode(query)


def report_data(findings: Sequence[Finding], *, prompts: dict, model: dict, settings: dict,
                query: dict[str, str]) -> dict:
    """The report as JSON-ready data: what was compared, how, and the findings in order."""
    return {"format": "twinlens-findings/1", "prompts": dict(prompts), "model": dict(model),
            "settings": dict(settings), "versions": versions(), "link": findings_link(query),
            "findings": [f.to_dict() for f in findings]}


def finding_chart(finding: Finding) -> alt.Chart | None:
    """A small bar chart of the finding's chart rows (None when it has none)."""
    if not finding.chart:
        return None
    return charts.finding_bars(pd.DataFrame(finding.chart, columns=["series", "label", "value"]))


def chart_svg(finding: Finding) -> str:
    """The finding's chart as inline SVG ('' without a chart)."""
    import vl_convert

    chart = finding_chart(finding)
    return "" if chart is None else vl_convert.vegalite_to_svg(chart.to_dict())


def _number_text(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def report_html(data: dict, findings: Sequence[Finding]) -> str:
    """The self-contained HTML of `report_data`'s `data` (no request leaves the page)."""
    e = html.escape
    prompts = "".join(f"<div><b>{e(name)}</b><pre>{e(text)}</pre></div>"
                      for name, text in data["prompts"].items())
    sections = []
    for finding in findings:
        status = STATUS_WORDS[finding.status]
        numbers = "".join(
            f'<tr><th>{e(name)}</th><td data-number="{e(name)}">{e(_number_text(value))}</td></tr>'
            for name, value in finding.numbers if value is not None)
        sections.append(
            f'<section data-step="{e(finding.step)}"><h2>{e(finding.title)}</h2>'
            + (f'<p class="status">{e(status)}</p>' if status else "")
            + f'<p class="sentence">{e(finding.sentence)}</p>'
            + (f'<p class="caveat">{e(finding.caveat)}</p>' if finding.caveat else "")
            + chart_svg(finding)
            + (f"<table>{numbers}</table>" if numbers else "") + "</section>")
    meta = "".join(f"<li>{e(k)}: {e(str(v))}</li>" for k, v in {**data["model"], **data["settings"]}.items())
    versions_text = ", ".join(f"{k} {v}" for k, v in data["versions"].items())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f"<title>twinlens findings</title><style>{STYLE}</style></head><body>"
        f'<h1>twinlens findings</h1><div class="prompts">{prompts}</div>{"".join(sections)}'
        f'<h2>Model and settings</h2><ul class="meta">{meta}</ul>'
        f'<p class="meta">Versions: {e(versions_text)}</p>'
        f'<p class="meta">Reopen in twinlens: <code>{e(data["link"])}</code></p>'
        "</body></html>"
    )
