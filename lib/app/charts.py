"""Every chart the pages draw, from small data frames (Altair + pandas, no Streamlit).

Two shapes serve all pages:

- **heatmap**: layers (rows, the top one last) × positions (columns). The frame has one row per
  cell with `layer` (int), `column` (a unique position label, see `position_label`, in the order
  the columns are drawn) and `differs` (True where A's and B's tokens differ at that position),
  plus the value to colour by. Every position is labelled up to `MAX_LABELS` columns; beyond that
  every n-th plus every differing one, so the column that lights up always has its label.
- **layer lines**: one line per series over layers 0…L, with a y axis fitted to the data (not
  forced from 0 to 1) and, when two sides are drawn, sides told apart by the line's dash *in the
  legend too* (legend symbols are strokes, not identical dots).

Frame builders (`*_frame`) turn analysis results into those frames; they are unit-tested
together with the chart specs (tests/unit/test_charts.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import altair as alt
import pandas as pd

from ..analyses.common.distances import LayerDistances, PositionDistances
from ..analyses.common.lens import LensGrid
from ..analyses.diff import TopTokenDiff
from ..analyses.patching import PatchResult
from ..analyses.watch import Watch, WordWatch

MAX_LABELS = 48  # position labels shown in full on a heatmap's x axis; more: every n-th + the differing
LABEL_CHARS = 6  # characters of a token written inside a lens cell
DIFFERS_COLOUR = "#c0392b"  # labels of positions where A's and B's tokens differ
SIDE_DASHES = ([1, 0], [6, 4])  # solid for the first side (A), dashed for the second (B)
ROW_HEIGHT = 16  # pixels per layer row of a heatmap
MAX_HEATMAP_HEIGHT = 900  # pixels; deeper models get thinner rows
LEGEND_COLUMNS = 2  # entries per row of a line chart's legend: two fit a half-width chart (≈ 470 px)
LEGEND_LABEL_LIMIT = 180  # pixels per legend label (longer ones end in …, the tooltip has them whole)
PRESENTATION_SCALE = 1.75  # "presentation size": text and rows this much larger, for a projector
ENTROPY = "entropy (bits)"  # the lens frame's entropy column (lens_grid_frame)
MIN_LABEL_PIXELS = 12  # a layer label needs this much height; thinner rows label every n-th layer


# ---------------------------------------------------------------- helpers


def position_label(position: int, token_a: str, token_b: str | None = None) -> str:
    """'3 ␣happy' or, when the two sides' tokens differ there, '3 ␣happy/␣angry' (unique per position)."""
    if token_b is None or token_b == token_a:
        return f"{position} {token_a}"
    return f"{position} {token_a}/{token_b}"


def labelled_layers(n_layers: int, row_pixels: float) -> list[int]:
    """The layers a heatmap's y axis labels: every one when a row is at least `MIN_LABEL_PIXELS`
    high (any model up to ~50 layers), else every n-th that fits, and always the last."""
    step = max(1, math.ceil(MIN_LABEL_PIXELS / row_pixels))
    return sorted(set(range(0, n_layers, step)) | {n_layers - 1})


def labelled_columns(
    columns: Sequence[str], differs: Sequence[bool], max_labels: int = MAX_LABELS
) -> list[str]:
    """The x labels a heatmap writes: all of them up to `max_labels`; beyond, every n-th (n chosen
    so about `max_labels` remain), the last one and every differing one."""
    if len(columns) <= max_labels:
        return list(columns)
    step = math.ceil(len(columns) / max_labels)
    keep = {i for i in range(0, len(columns), step)} | {len(columns) - 1}
    keep |= {i for i, d in enumerate(differs) if d}
    return [c for i, c in enumerate(columns) if i in keep]


def fitted_domain(values: Sequence[float], *, floor: float | None = None, pad: float = 0.05) -> list[float]:
    """[low, high] spanning `values` with `pad` of their range added on both sides (at least
    `floor` below when given, e.g. 0 for distances); a flat series gets a small band around it."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return [0.0, 1.0]
    low, high = min(finite), max(finite)
    span = high - low or max(abs(high), 1e-12)
    low, high = low - pad * span, high + pad * span
    if floor is not None:
        low = max(floor, low) if min(finite) >= floor else low
    return [low, high]


def short_token(token: str, chars: int = LABEL_CHARS) -> str:
    return token if len(token) <= chars else token[: chars - 1] + "…"


# ---------------------------------------------------------------- frames


def distance_lines_frame(series: dict[str, LayerDistances], measure: str) -> pd.DataFrame:
    """Long frame (layer, series, value) of one measure ('cosine' or 'relative_l2') of each named
    `LayerDistances`."""
    return pd.DataFrame(
        {"layer": layer, "series": name, "value": value}
        for name, distances in series.items()
        for layer, value in enumerate(getattr(distances, measure))
    )


def measures_frame(distances: LayerDistances) -> pd.DataFrame:
    """Long frame (layer, series, value) of both measures of one `LayerDistances`."""
    return pd.DataFrame(
        {"layer": layer, "series": name, "value": value}
        for name, values in (("cosine distance", distances.cosine), ("relative L2", distances.relative_l2))
        for layer, value in enumerate(values)
    )


def position_distance_frame(positions: PositionDistances, tokens_a: Sequence[str],
                            tokens_b: Sequence[str]) -> pd.DataFrame:
    """One row per (layer, position) of a position-by-position distance grid."""
    rows = []
    for layer, (cos_row, rel_row) in enumerate(zip(positions.cosine, positions.relative_l2, strict=True)):
        for i, (cos, rel) in enumerate(zip(cos_row, rel_row, strict=True)):
            p = positions.first_position + i
            a, b = tokens_a[p], tokens_b[p]
            rows.append({"layer": layer, "position": p, "column": position_label(p, a, b), "differs": a != b,
                         "token A": a, "token B": b, "cosine distance": cos, "relative L2": rel})
    return pd.DataFrame(rows)


def lens_grid_frame(name: str, grid: LensGrid, differs: Sequence[bool] | None = None, *,
                    completes: Mapping[tuple[int, int], str] | None = None,
                    characters: Mapping[int, str] | None = None) -> pd.DataFrame:
    """One row per lens cell of `grid` (side `name`); `differs[i]`: the token at grid.positions[i]
    has no partner in the other prompt. Entropy in bits, like every page.

    Characters across byte pieces: `completes[(position, id)]` is the character a partial-character
    top-1 completes to (lib.analyses.generation.lens_completions): the cell writes it and its hover
    says '␣<F0 9F> → ␣🐠'; `characters[position]` names the character an input piece belongs to
    (readable.piece_characters), shown in the hover after the piece."""
    differs = differs or [False] * len(grid.positions)
    completes = completes or {}
    characters = characters or {}

    def top1(cell) -> tuple[str, str]:
        token = cell.top[0]
        whole = completes.get((cell.position, token.id))
        return (token.token, token.token) if whole is None else (f"{token.token} → {whole}", whole)

    rows = []
    for layer, row in enumerate(grid.cells):
        for i, cell in enumerate(row):
            hover, written = top1(cell)
            part = characters.get(cell.position)
            rows.append({
                "prompt": name,
                "layer": layer,
                "position": cell.position,
                "column": position_label(cell.position, grid.tokens[i]),
                "differs": bool(differs[i]),
                "input": grid.tokens[i] if part is None else f"{grid.tokens[i]} ({part})",
                "top1": hover,
                "label": short_token(written),
                "probability": cell.top[0].prob,
                ENTROPY: cell.entropy_bits,
                "final": grid.matches_final(layer, i),
                "topk": " · ".join(f"{t.token} {t.prob:.3f}" for t in cell.top),
            })
    return pd.DataFrame(rows)


def patching_frame(result: PatchResult) -> pd.DataFrame:
    """One row per patched cell: layer, B's position and token, effect and the raw logit difference."""
    rows = []
    for layer, (effects, raws) in enumerate(zip(result.effect, result.raw, strict=True)):
        for j, p in enumerate(result.positions):
            b = result.tokens_b[p]
            a = result.tokens_a[p] if result.full_grid else b
            rows.append({"layer": layer, "position": p, "column": position_label(p, b), "differs": a != b,
                         "token": b, "effect": effects[j], "logit difference": raws[j]})
    return pd.DataFrame(rows)


def watch_frame(watch: Watch, names: tuple[str, str] = ("A", "B"),
                labels: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (side, token, layer): the token's lens probability, rank and logit. `labels[i]`
    names the i-th token (e.g. '␣Lakers (first piece ␣L)'); by default its readable text."""
    return pd.DataFrame(
        {"prompt": name, "token": labels[i] if labels else t.token, "id": t.id, "layer": layer,
         "probability": t.prob[layer], "rank": t.rank[layer], "logit": t.logit[layer]}
        for name, side in zip(names, (watch.a, watch.b), strict=True)
        for i, t in enumerate(side)
        for layer in range(len(t.prob))
    )


def word_frame(scores: WordWatch, names: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """One row per (side, word, layer): the whole word's teacher-forced log-probability and probability."""
    return pd.DataFrame(
        {"prompt": name, "word": w.word, "pieces": " + ".join(w.pieces), "layer": layer,
         "log-probability": value, "probability": math.exp(value)}
        for name, side in zip(names, (scores.a, scores.b), strict=True)
        for w in side
        for layer, value in enumerate(w.logprob)
    )


def divergence_frame(diff: TopTokenDiff) -> pd.DataFrame:
    """Long frame (layer, measure, bits, most changed) of KL(A‖B) and Jensen–Shannon per layer."""
    return pd.DataFrame(
        {"layer": layer.layer, "measure": measure, "bits": value,
         "most changed": layer.most_changed.token if layer.most_changed else ""}
        for layer in diff.layers
        for measure, value in (("KL", layer.kl_bits), ("Jensen–Shannon", layer.js_bits))
    )


# ---------------------------------------------------------------- charts


def heatmap(
    frame: pd.DataFrame,
    value: str,
    *,
    legend: str,
    x_title: str,
    scheme: str = "blues",
    domain: Sequence[float] | None = None,
    diverging: bool = False,
    text: str | None = None,
    text_format: str | None = None,
    outline: str | None = None,
    tooltip: Sequence = (),
    clickable: bool = False,
    zoom: float = 1.0,
) -> alt.LayerChart:
    """Layers × positions coloured by `value` (see the module docstring for the frame).

    `diverging`: a scale centred on 0 from −m to m (m = max |value|, at least 1). `text`: a column
    written in each cell (`text_format` for numbers). `outline`: a boolean column whose cells get a
    red outline. `clickable`: a click selects the cell (parameter 'cell', fields layer and position).
    `zoom`: text, rows and label room this many times larger (`PRESENTATION_SCALE` on a projector).
    """
    columns = list(dict.fromkeys(frame["column"]))
    differing = list(dict.fromkeys(frame.loc[frame["differs"], "column"])) if "differs" in frame else []
    shown = labelled_columns(columns, [c in differing for c in columns])
    is_differing = f"indexof({json.dumps(differing, ensure_ascii=False)}, datum.value) >= 0"
    axis = alt.Axis(
        values=shown, labelOverlap=False, labelAngle=-45, labelLimit=110 * zoom,
        labelFontSize=10 * zoom, titleFontSize=11 * zoom,
        labelColor=alt.condition(is_differing, alt.value(DIFFERS_COLOUR), alt.value("#808495")),
        labelFontWeight=alt.condition(is_differing, alt.value("bold"), alt.value("normal")),
    )
    n_layers = int(frame["layer"].max()) + 1 if len(frame) else 1
    height = min(ROW_HEIGHT * zoom * n_layers + 60, MAX_HEATMAP_HEIGHT * zoom)
    # labelOverlap=False: Vega-Lite would otherwise drop every other layer label once they touch
    layer_axis = alt.Axis(values=labelled_layers(n_layers, (height - 60) / n_layers / zoom),
                          labelOverlap=False, labelFontSize=10 * zoom, titleFontSize=11 * zoom)
    base = alt.Chart(frame).encode(
        x=alt.X("column:N", sort=columns, title=x_title, axis=axis),
        y=alt.Y("layer:O", sort="descending", title="layer", axis=layer_axis),
    )
    if diverging:
        bound = max(1.0, float(frame[value].abs().max()))
        scale = alt.Scale(scheme="redblue", reverse=True, domain=[-bound, bound], domainMid=0)
    else:
        domain = list(domain) if domain else fitted_domain(frame[value], floor=0)
        scale = alt.Scale(scheme=scheme, domain=domain)
    rect = base.mark_rect().encode(color=alt.Color(f"{value}:Q", scale=scale, title=legend),
                                   tooltip=list(tooltip) or ["layer", "column", alt.Tooltip(f"{value}:Q")])
    if clickable:
        rect = rect.add_params(alt.selection_point(name="cell", fields=["layer", "position"], on="click"))
    layers: list[alt.Chart] = [rect]
    if outline is not None:
        layers.append(base.transform_filter(f"datum['{outline}']").mark_rect(
            fill=None, stroke="#d62728", strokeWidth=1.5))
    if text is not None:
        low, high = scale.domain if not diverging else (0.0, bound)
        dark = low + 0.5 * (high - low)
        measure = f"abs(datum['{value}'])" if diverging else f"datum['{value}']"
        ink = alt.condition(f"{measure} > {dark}", alt.value("white"), alt.value("black"))
        shown_text = alt.Text(f"{text}:Q", format=text_format) if text_format else alt.Text(f"{text}:N")
        layers.append(base.mark_text(fontSize=9 * zoom).encode(text=shown_text, color=ink))
    chart = alt.layer(*layers).properties(height=height)
    if zoom != 1.0:
        chart = chart.configure_legend(labelFontSize=10 * zoom, titleFontSize=11 * zoom)
    return chart


def layer_lines(
    frame: pd.DataFrame,
    y: str,
    *,
    y_title: str,
    colour: str | None = "series",
    side: str | None = None,
    log: bool = False,
    reverse: bool = False,
    floor: float | None = None,
    title: str | None = None,
    tooltip: Sequence = (),
    height: int = 280,
) -> alt.Chart:
    """One line per `colour` value over layers (x: `layer`), y fitted to the data.

    `side`: a column with two values (A/B, model 1/model 2) drawn solid and dashed; the chart's
    subtitle says which is which.
    `log`: a log scale (ranks), `reverse`: top values at the top.
    """
    if log:
        scale = alt.Scale(type="log", reverse=reverse)
    else:
        domain = fitted_domain(frame[y], floor=floor)
        scale = alt.Scale(domain=domain, nice=False, zero=False, reverse=reverse)
    encoding = {
        "x": alt.X("layer:Q", title="layer", axis=alt.Axis(tickMinStep=1, format="d")),
        "y": alt.Y(f"{y}:Q", title=y_title, scale=scale),
        "tooltip": list(tooltip) or ["layer", alt.Tooltip(f"{y}:Q", format=".4g")],
    }
    if colour is not None:
        # In rows of LEGEND_COLUMNS: a bottom legend in one row runs past a half-width chart and is clipped
        n = frame[colour].nunique()
        legend = alt.Legend(orient="bottom", columns=min(n, LEGEND_COLUMNS), labelLimit=LEGEND_LABEL_LIMIT)
        scale = alt.Scale(scheme="category10")
        encoding["color"] = alt.Color(f"{colour}:N", title=None, legend=legend, scale=scale)
    if side is not None:
        names = list(dict.fromkeys(frame[side]))
        encoding["strokeDash"] = alt.StrokeDash(
            f"{side}:N", scale=alt.Scale(domain=names, range=list(SIDE_DASHES[: len(names)])), legend=None,
        )
    # Browsers draw a strokeDash legend as bare labels (its symbols vanish), so the sides are named
    # in the chart's subtitle instead, with the line style each one has.
    key = side_key(list(dict.fromkeys(frame[side]))) if side is not None else ""
    if title and key:
        chart = alt.Chart(frame, title=alt.TitleParams(text=title, subtitle=key, anchor="start"))
    elif title or key:  # Vega draws no subtitle under an empty title: the key alone is the title
        chart = alt.Chart(frame, title=alt.TitleParams(text=title or key, anchor="start",
                                                       fontWeight="normal" if key and not title else "bold"))
    else:
        chart = alt.Chart(frame)
    return chart.mark_line(point=alt.OverlayMarkDef(size=30)).encode(**encoding).properties(height=height)


def side_key(names: Sequence[str]) -> str:
    """'A: solid line ━━ · B: dashed line ╍╍' — which side each line style stands for."""
    styles = ("solid line ━━", "dashed line ╍╍")
    return " · ".join(f"{name}: {style}" for name, style in zip(names, styles, strict=False))


def divergence_chart(frame: pd.DataFrame, kl_title: str = "KL(A‖B)") -> alt.HConcatChart:
    """KL and Jensen–Shannon per layer, each in its own panel with an axis fitted to its values
    (JS needs no 0…1 axis when it stays near 0). The most-changed token is in the tooltip; only the
    layer where JS peaks is labelled, horizontally, so no labels collide."""
    tooltip = ["layer", alt.Tooltip("bits:Q", format=".4f"), "most changed"]
    panels = []
    styles = (("KL", kl_title, "#d62728"), ("Jensen–Shannon", "Jensen–Shannon", "#1f77b4"))
    for measure, title, colour in styles:
        part = frame[frame["measure"] == measure]
        line = layer_lines(part, "bits", y_title=f"{title}, bits", colour=None, floor=0.0, title=title,
                           tooltip=tooltip, height=260).encode(color=alt.value(colour))
        panels.append(line)
    js = frame[frame["measure"] == "Jensen–Shannon"]
    if len(js) and js["bits"].max() > 0:
        peak = js.loc[[js["bits"].idxmax()]]
        label = alt.Chart(peak).mark_text(dy=-10, fontSize=11).encode(
            x="layer:Q", y="bits:Q", text="most changed:N")
        panels[1] = alt.layer(panels[1], label)
    return alt.hconcat(*panels)


def band_lines(frame: pd.DataFrame, *, y_title: str, domain: Sequence[float] | None = None,
               title: str | None = None, height: int = 260) -> alt.LayerChart:
    """One line per `series` over layers, each with a shaded band from `low` to `high` (a
    confidence interval, ± a standard deviation); the frame has columns layer, series, value, low,
    high. `domain`: the y range (default: fitted to the bands)."""
    scale = alt.Scale(domain=list(domain) if domain is not None else fitted_domain(
        [*frame["low"], *frame["high"]]), nice=False, zero=False)
    colour = alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=400),
                       scale=alt.Scale(scheme="category10"))
    x = alt.X("layer:Q", title="layer", axis=alt.Axis(tickMinStep=1, format="d"))
    tooltip = ["layer", "series", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
               alt.Tooltip("high:Q", format=".3f")]
    base = alt.Chart(frame, title=alt.TitleParams(text=title, anchor="start") if title else alt.Undefined)
    band = base.mark_area(opacity=0.2).encode(x=x, y=alt.Y("low:Q", title=y_title, scale=scale), y2="high:Q",
                                              color=colour)
    line = base.mark_line(point=alt.OverlayMarkDef(size=30)).encode(
        x=x, y=alt.Y("value:Q", title=y_title, scale=scale), color=colour, tooltip=tooltip)
    return alt.layer(band, line).properties(height=height)


# ---------------------------------------------------------------- page-specific charts

def lens_heatmap(frame: pd.DataFrame, colour_by: str, present: bool = False) -> alt.LayerChart:
    """The lens grid (`lens_grid_frame`): cells coloured by p(top-1) or entropy, the top-1 written
    in, final answers outlined, a click selects a cell; `present`: at presentation size."""
    value = "probability" if colour_by == "probability" else ENTROPY
    tooltip = [
        alt.Tooltip("layer:O"), alt.Tooltip("position:O"), alt.Tooltip("input:N", title="input token"),
        alt.Tooltip("top1:N", title="top-1"), alt.Tooltip("probability:Q", format=".3f"),
        alt.Tooltip(f"{ENTROPY}:Q", format=".2f"), alt.Tooltip("topk:N", title="top-k"),
    ]
    return heatmap(
        frame, value, legend=value if value == ENTROPY else "p(top-1)", x_title="position · input token",
        domain=[0.0, 1.0] if value == "probability" else None, text="label", outline="final",
        tooltip=tooltip, clickable=True, zoom=PRESENTATION_SCALE if present else 1.0,
    )


def component_bars(table: pd.DataFrame, side: str) -> alt.Chart:
    """Per layer, the attention and MLP bars of one side (rows of `table` with side == `side`;
    columns layer, component, value)."""
    return alt.Chart(table[table.side == side]).mark_bar().encode(
        x=alt.X("layer:O"), xOffset="component:N", y=alt.Y("value:Q", title="direct effect on the metric"),
        color=alt.Color("component:N"), tooltip=["layer", "component", alt.Tooltip("value", format=".3f")],
    ).properties(height=220)


def signed_grid(table: pd.DataFrame, x: str, y: str, title: str, bound: float | None = None,
                x_sort: list | None = None) -> alt.Chart:
    """A diverging grid of `value` over `x` × `y` centred on 0 (red positive, blue negative) from
    −bound to bound (default: max |value|); layers, when `y` is 'layer', with the top one last."""
    bound = bound or max(1e-9, float(table["value"].abs().max()))
    return alt.Chart(table, title=title).mark_rect().encode(
        x=alt.X(f"{x}:O", sort=x_sort), y=alt.Y(f"{y}:O", sort="descending" if y == "layer" else None),
        color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue", reverse=True, domain=[-bound, bound]),
                        title=None),
        tooltip=[x, y, alt.Tooltip("value", format=".3f")],
    ).properties(height=alt.Step(max(6, min(20, 600 // table[y].nunique()))))


def attention_chart(frame: pd.DataFrame, title: str, diverging: bool) -> alt.Chart:
    """An attention pattern, queries (rows) × keys: weights 0…1 in greys, or a difference of two
    patterns −1…1 (`diverging`). Columns query, key, q, value."""
    labels = list(dict.fromkeys(frame["key"]))
    scale = (alt.Scale(scheme="redblue", reverse=True, domain=[-1, 1]) if diverging
             else alt.Scale(scheme="greys", domain=[0, 1]))
    return alt.Chart(frame, title=title).mark_rect().encode(
        x=alt.X("key:N", sort=labels, axis=alt.Axis(labelAngle=-45, labelLimit=100)),
        y=alt.Y("query:N", sort=list(dict.fromkeys(frame["query"]))),
        color=alt.Color("value:Q", scale=scale, title=None),
        tooltip=["query", "key", alt.Tooltip("value", format=".3f")],
    ).properties(height=alt.Step(max(8, min(24, 480 // frame["q"].nunique()))))


def feature_heatmap(table: pd.DataFrame, bound: float) -> alt.Chart:
    """Features × positions; colour = activation from 0 (white) to `bound`. Every position is
    labelled (Vega-Lite would drop labels that touch); a feature's full label is in the tooltip.
    Columns feature, label, position, column, token, activation."""
    columns = list(dict.fromkeys(table["column"]))
    return alt.Chart(table).mark_rect().encode(
        x=alt.X("column:N", sort=columns, title="position · token",
                axis=alt.Axis(values=columns, labelOverlap=False, labelAngle=-45, labelLimit=120)),
        y=alt.Y("feature:N", sort=list(dict.fromkeys(table["feature"])), title=None,
                axis=alt.Axis(labelLimit=260)),
        color=alt.Color("activation:Q",
                        scale=alt.Scale(scheme="oranges", domain=[0, max(bound, 1e-6)], clamp=True)),
        tooltip=["label", "position", "token", alt.Tooltip("activation", format=".3f")],
    ).properties(height=min(22 * table["feature"].nunique() + 60, 600))


def feature_positions(frame: pd.DataFrame) -> alt.Chart:
    """One feature's activation at each position, one panel per side (columns side, p, position,
    activation)."""
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("p:O", title="position"), y="activation:Q", color="side:N", column=alt.Column("side:N"),
        tooltip=["side", "position", alt.Tooltip("activation", format=".3f")],
    ).properties(width=320, height=160)


def feature_layers(frame: pd.DataFrame) -> alt.Chart:
    """One feature's encoder direction read at every layer's residual, a line per side (columns
    layer, side, pre-activation)."""
    return alt.Chart(frame).mark_line(point=True).encode(x="layer:O", y="pre-activation:Q", color="side:N")


def sweep_chart(table: pd.DataFrame) -> alt.Chart:
    """A steering sweep: the effect (or, without a target, the KL in bits) per layer, a line per α."""
    measure = "effect" if table["effect"].notna().all() else "KL (bits)"
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("layer:Q"), y=alt.Y(f"{measure}:Q"), color=alt.Color("α:N"),
        tooltip=["layer", "α", alt.Tooltip("effect", format=".3f"), alt.Tooltip("push", format=".2f"),
                 alt.Tooltip("KL (bits)", format=".3f")],
    ).properties(height=320)


def effect_heatmap(table: pd.DataFrame, labelled: bool = True) -> alt.LayerChart:
    """Patching: layers × B's positions (columns layer, position, column, token, effect, logit
    difference), diverging colours centred on 0 (red: toward A, blue: away from it); `labelled`:
    each cell's effect written in it."""
    tooltip = ["layer", "position", "token", alt.Tooltip("effect", format=".3f"),
               alt.Tooltip("logit difference", format=".3f")]
    return heatmap(table, "effect", legend="effect", x_title="position · token (B)", diverging=True,
                   text="effect" if labelled else None, text_format=".2f", tooltip=tooltip)


def number(field: str, decimals: str = ".3f") -> alt.Tooltip:
    """A tooltip entry showing `field` with the d3 format `decimals`."""
    return alt.Tooltip(field, format=decimals)


def circuit_graph(nodes: pd.DataFrame, edges: pd.DataFrame, n_layers: int,
                  sign_colours: Mapping[str, str]) -> alt.LayerChart:
    """A circuit as a graph (frames of `circuit_view.graph_frames`): layers left to right (node x =
    2·layer + 1), edge width = |score|, colour = sign, tooltips; a click selects a node ('node')."""
    step = max(1, n_layers // 10)
    axis = alt.Axis(title="layer", values=[2 * layer + 1 for layer in range(0, n_layers, step)],
                    labelExpr="(datum.value - 1) / 2", grid=False)
    x = alt.X("x:Q", axis=axis, scale=alt.Scale(nice=False, padding=20))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(reverse=True, padding=20))
    signs = alt.Scale(domain=list(sign_colours), range=list(sign_colours.values()))
    lines = alt.Chart(edges).mark_line(opacity=0.7, interpolate="basis").encode(
        x=x, y=y, order="order:Q", detail="edge:N",
        color=alt.Color("sign:N", scale=signs, title="edge pushes the metric"),
        strokeWidth=alt.StrokeWidth("width:Q", legend=None, scale=None),
        tooltip=["source", "target", alt.Tooltip("score:Q", format=".3f", title="EAP score"),
                 alt.Tooltip("exact:Q", format=".3f", title="exact path patching")],
    )
    dots = alt.Chart(nodes).mark_circle(size=90, color="#444").encode(
        x=x, y=y, tooltip=["name", "kind", "layer"]).add_params(
        alt.selection_point(name="node", fields=["name"], on="click"))
    labels = alt.Chart(nodes).mark_text(dy=-10, fontSize=10).encode(x=x, y=y, text="name")
    return alt.layer(lines, dots, labels).properties(height=420)


def circuit_curve(frame: pd.DataFrame, size: int) -> alt.LayerChart:
    """Faithfulness and knockout (columns size, share, measure, value) against the number of top
    edges kept, on a symlog axis, with the chosen `size` marked."""
    line = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("size:Q", scale=alt.Scale(type="symlog"), title="top edges kept"),
        y=alt.Y("value:Q", title="fraction of m_A − m_B restored"),
        color=alt.Color("measure:N", title=None),
        tooltip=["size", alt.Tooltip("share:Q", format=".1%", title="share of Σ|score|"),
                 "measure", alt.Tooltip("value:Q", format=".3f")],
    )
    chosen = alt.Chart(pd.DataFrame({"size": [size]})).mark_rule(strokeDash=[4, 4]).encode(x="size:Q")
    return alt.layer(line, chosen).properties(height=240)


def finding_bars(frame: pd.DataFrame) -> alt.Chart:
    """A finding's small bar chart: one bar per label (columns series, label, value), grouped by
    series."""
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("label:N", sort=list(dict.fromkeys(frame["label"])), title=None,
                axis=alt.Axis(labelAngle=-45, labelOverlap=False)),
        y=alt.Y("value:Q", title=None), color=alt.Color("series:N", title=None),
        xOffset="series:N", tooltip=["series", "label", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=160, width=alt.Step(14 if len(frame) > 12 else 40))
