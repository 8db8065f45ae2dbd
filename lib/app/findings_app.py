"""The Findings page's Streamlit glue: run the steps through the results cache, draw each finding
as it arrives (the first before the last step runs), and offer the report for download.
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from lib.app import views

from ..core.models import LoadedModel
from . import ui
from .findings import STEPS, TITLES, Finding, Findings, in_order, run_findings
from .report import finding_chart, report_data, report_html
from .request import Request
from .session import PAGE_PARAMS

DEFAULT_PAGE = "compare"  # dashboard.DEFAULT_PAGE's name
STATUS_MARK = {"ok": "", "weak": "⚠️ Weak evidence — ", "cannot": "⛔ "}


def page_link(request: Request, finding: Finding) -> str:
    """The relative link that opens the page behind `finding` for this request, in its state."""
    query = request.to_query() | {name: value for name, value in finding.link if name in PAGE_PARAMS}
    path = "/" if finding.page == DEFAULT_PAGE else finding.page  # the default page lives at the root
    return f"{path}?{urlencode(query)}"


def draw_finding(request: Request, finding: Finding) -> None:
    """One finding: its title, sentence (status said first), caveat, chart and the link."""
    with st.container(border=True):
        st.markdown(f"**{finding.title}**")
        st.markdown(views.plain(STATUS_MARK[finding.status] + finding.sentence))
        chart = finding_chart(finding)
        if chart is not None:
            st.altair_chart(chart)
        if finding.caveat:
            st.caption(views.plain(finding.caveat))
        if finding.status != "cannot":
            st.markdown(f"[Open the page behind it →]({page_link(request, finding)})")


def request_info(request: Request) -> tuple[dict, dict]:
    """The report's prompts and settings for `request`."""
    prompts = ({"prompt": request.a} if request.two_models else {"A": request.a, "B": request.b})
    settings = {"bos": request.bos, "top_k": request.k, "chat": request.chat, "system": request.system,
                "prefill": request.prefill, "mode": request.mode, "model2": request.model2}
    return prompts, settings


def show_findings(request: Request, model: LoadedModel, names: tuple[str, str]) -> list[Finding]:
    """Run the six steps in order, each through the results cache, drawing each finding at once."""
    run_a, run_b = request.runs
    chat = {"system": request.system, "prefill": request.prefill} if request.chat else None
    bar = st.progress(0.0, text=f"Finding 1 of {len(STEPS)}…")
    slots = {step: st.empty() for step in STEPS}  # each finding in its place, whenever its step ends
    for step, slot in slots.items():
        slot.caption(f"{TITLES[step]}: working…")
    found: dict[str, Finding] = {}
    steps = run_findings(model, run_a.model, run_a, run_b, ui.cached, names=names, chat=chat, top_k=request.k,
                         model_b=run_b.model if request.two_models else None, remote=run_a.model.remote,
                         has=ui.RESULTS.has, keep=ui.RESULTS.keep)
    for finding in steps:
        found[finding.step] = finding
        with slots[finding.step].container():
            draw_finding(request, finding)
        if len(found) < len(STEPS):
            waiting = [TITLES[s].lower() for s in STEPS if s not in found]
            bar.progress(len(found) / len(STEPS),
                         text=f"Finding {len(found) + 1} of {len(STEPS)}: {', '.join(waiting)}…")
    bar.empty()
    return in_order(found.values())


def report_buttons(request: Request, model: LoadedModel, findings: list[Finding]) -> None:
    """Download the report: the HTML file (offline, self-contained) and the same as JSON."""
    from .export import to_json

    prompts, settings = request_info(request)
    data = report_data(findings, prompts=prompts, model=model.info(), settings=settings,
                       query=request.to_query())
    left, right = st.columns(2)
    left.download_button("⬇ Download report (HTML)", report_html(data, findings),
                         file_name="twinlens-report.html", mime="text/html", on_click="ignore",
                         key="findings-report-html")
    right.download_button("⬇ Report data (JSON)", to_json(data, indent=1), file_name="twinlens-report.json",
                          mime="application/json", on_click="ignore", key="findings-report-json")


def save_findings(request: Request, findings: list[Finding]) -> None:
    """Save the findings with the comparison's request in the History (reopened without a run)."""
    views.save_form(request, Findings(tuple(findings)), what="findings")
