"""Findings: the answer for the pair in six plain sentences, each with the page behind it."""

from __future__ import annotations

from lib.app import findings_app, ui, views

views.page(
    "Findings",
    """
After Compare, this page runs the analyses in the order a researcher would and writes each finding
as one plain sentence with its numbers, a small chart, a one-line caveat and a link that opens the
page behind it in the same state (nothing is computed again there).

1. **What each says**: the next token in words and the first line of each prompt's answer.
2. **Where they part**: the tokens that differ, the layer where the two states are furthest apart,
   and from which layer each prompt's answer stays on top.
3. **What carries the difference**: patching A into B, and where the difference reaches the last token.
4. **Who writes it**: the heads and MLPs that add most to the answer, with what patching each does.
5. **Which concepts**: the SAE features that carry the difference (attribution, not mere activity).
6. **What would make B say A's answer**: the smallest push along A − B that flips B.

A step with nothing clear to say says so; a step that cannot run says why, and the rest still show.
On NDIF steps 1–3 run (reduced on the server); in two-models mode steps 1–3 run (patching writes
model 1 into model 2 when both have as many layers); the other steps say why not.
**Download report** saves all of it as one HTML file that opens offline, and as JSON.
""",
)

found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    side_a, side_b = views.sides(request, comparison)
    findings = findings_app.show_findings(request, model, (side_a.name, side_b.name))
    findings_app.report_buttons(request, model, findings)
    findings_app.save_findings(request, findings)
