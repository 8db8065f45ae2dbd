"""Findings: the answer for one pair of prompts, step by step, as a researcher would run it.

Each step reads results the other analyses compute (so every number here is the number the page
and CLI command behind it give for the same settings) and writes one `Finding`: a plain sentence
whose numbers are the values in `Finding.numbers`, a one-line caveat, a small chart's rows and the
page (with its link state) that shows it in full.

    says      what each says: the next token in words and the first line of each greedy
              continuation (an answer start or system message typed in chat mode is named)
    part      where they part: the tokens that differ, the layer where the two last-position
              states are furthest apart (cosine distance), and from which layer each prompt's own
              answer stays the lens's top-1
    carries   what carries the difference: residual patching (lib.analyses.patching), and the
              layer where the difference reaches the last position (`arrival_layer`)
    writes    who writes it: the heads and MLPs with the largest direct logit attribution to
              m_A − m_B (lib.analyses.components), each with its exact patching effect (A's
              component written into B alone, the component grid's cell)
    concepts  which concepts: SAE features at the shipped SAE layer nearest to the arrival layer,
              ranked by attribution to the logit difference (lib.analyses.features), with the
              SAE's error as its own row
    flip      what would make B say A's answer: steer-to-flip (lib.analyses.steering), the layer
              needing the smallest push, B's steered continuation and its side effect (KL in bits
              on a neutral text)

A step that cannot run (no SAE for the model, a pair whose metric is the same, …) yields a
finding with status "cannot" that says why; the others still run. Where the evidence is weak
(a small effect, attributions that disagree with exact patching, an SAE that reconstructs poorly,
no flip) the status is "weak" and the sentence says so.

On NDIF (a remote model) says, part and carries run reduced where the model is (the functions the
registry's "findings" row declares; `get` is the NDIF gate); writes, concepts and flip need whole
residual streams, attention outputs or gradients here, and say so (`ON_NDIF`). In two-models mode
(prompt A through model 1 and model 2) carries patches model 1 into model 2 when their depth and
width match (else it says which differs); writes, concepts and flip compare two prompts in one
model, and say so (`TWO_MODELS`).

`run_findings` yields the findings one at a time, so a page can show the first before the last
step runs (each in its place: "says" comes last but one when its answers are written in the
flip's batch, see `run_findings`; `in_order` sorts them); it asks for every result through
`get(fn, *args, **kwargs)`, which the app points at its results cache (keys) and the CLI at a
direct call (the model and captures themselves).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..analyses.common.metric import metric_pair
from ..analyses.common.sae import shipped_saes
from ..analyses.compare import Comparison, compare_captures, compare_prompts
from ..analyses.components import (
    ComponentAttribution,
    activations_of,
    attribute_captures,
    patched_metric,
    position_groups,
    top_components,
)
from ..analyses.features import FeatureAttribution, attribution_of_captures, nearest_sae_layer
from ..analyses.generation import Continuation, ContinuationPair, GenerationSettings, continue_capture
from ..analyses.model_compare import compare_model_captures
from ..analyses.patching import PatchResult, arrival_layer, patch_captures
from ..analyses.patching import reading as patching_reading
from ..analyses.steering import FlipSearch, SteerResult, steer_captures, steer_to_flip, steer_with_answer
from ..core.backend import Transplant
from ..core.capture import Capture
from ..core.errors import SettingsError, TwinlensError
from ..core.sites import Site
from ..core.tokens import align

STEPS = ("says", "part", "carries", "writes", "concepts", "flip")
TITLES = {
    "says": "What each says", "part": "Where they part", "carries": "What carries the difference",
    "writes": "Who writes it", "concepts": "Which concepts", "flip": "What would make B say A's answer",
}
PAGES = {"says": "continuations", "part": "compare", "carries": "patching", "writes": "components",
         "concepts": "features", "flip": "steering"}
ANSWER_TOKENS = 24  # new tokens of each greedy continuation ("what each says")
STEER_TOKENS = ANSWER_TOKENS  # B's steered continuation (the Steering page's default); equal, so
# B's own answer is the unsteered row of the flip's batch
TOP_COMPONENTS = 3
TOP_FEATURES = 3
WEAK_EFFECT = 0.3  # a patching effect below this carries little of the difference
POOR_FVU = 0.5  # an SAE leaving more than half the variance unexplained reconstructs poorly
BIG_ERROR = 0.5  # the SAE's error row carrying more than half the estimate: features explain little
MIN_RISE = 1e-6  # a probability moving less than this between A and B is no contrast
Get = Callable[..., object]  # get(fn, *args, **kwargs): fn's value for these arguments
Has = Callable[..., bool]  # has(fn, *args, **kwargs): whether get would return at once
Keep = Callable[..., None]  # keep(value, fn, *args, **kwargs): value is fn(*args, **kwargs)


@dataclass(frozen=True)
class Finding:
    """One step's finding. `numbers`: the values the sentence quotes, by name (in the sentence's
    order); `chart`: rows (series, label, value) of a small bar chart; `page` and `link`: the page
    behind it and the page parameters that open it in the same state; status "ok", "weak" (said
    plainly in the sentence) or "cannot" (the sentence says why)."""

    step: str
    sentence: str
    caveat: str = ""
    status: str = "ok"
    numbers: tuple[tuple[str, float | int | str | None], ...] = ()
    chart: tuple[tuple[str, str, float], ...] = ()
    link: tuple[tuple[str, str], ...] = ()
    details: tuple[str, ...] = field(default=())

    @property
    def title(self) -> str:
        return TITLES[self.step]

    @property
    def page(self) -> str:
        return PAGES[self.step]

    def number(self, name: str):
        return dict(self.numbers)[name]

    def to_dict(self) -> dict:
        return {"step": self.step, "title": self.title, "sentence": self.sentence, "caveat": self.caveat,
                "status": self.status, "numbers": dict(self.numbers),
                "chart": [{"series": s, "label": label, "value": v} for s, label, v in self.chart],
                "page": self.page, "link": dict(self.link), "details": list(self.details)}


@dataclass(frozen=True)
class Findings:
    """The findings of one pair, in order: what the History keeps with the comparison."""

    findings: tuple[Finding, ...]

    def to_dict(self) -> dict:
        return {"findings": [f.to_dict() for f in self.findings]}


def cannot(step: str, why: str, caveat: str = "") -> Finding:
    """The finding of a step that could not run: why, in the user's words."""
    return Finding(step, f"This step could not run: {why}", caveat=caveat, status="cannot")


# Why a step does not run on NDIF (only what is reduced where the model is comes back) …
ON_NDIF = {
    "writes": "on NDIF, direct logit attribution needs every head's and MLP's output and a backward pass "
              "(gradients) of B at this machine, and patching each part alone needs A's attention outputs "
              "here, which NDIF would have to send back whole.",
    "concepts": "on NDIF, the SAE reads both prompts' whole residual stream at its layer and its attribution "
                "needs a backward pass (gradients) of B, which NDIF would have to send back.",
    "flip": "on NDIF, steering adds A's minus B's residual at every position of B, so it needs both prompts' "
            "whole residual streams at this machine, which NDIF would have to send back.",
}
LOCAL_HINT = "Pick the local or nnsight backend with a model this machine holds to run this step."
# … and in two-models mode (prompt A through model 1 and model 2)
TWO_MODELS = {
    "writes": "in two-models mode, the two sides are different models whose heads and MLPs are not the same "
              "parts, and this step ranks one model's parts by what they write for two prompts.",
    "concepts": "in two-models mode, an SAE reads one model's residual stream and its attribution needs that "
                "model's gradient for two prompts, so the Features page shows each model's features without "
                "this ranking.",
    "flip": "in two-models mode there is one prompt, and steering pushes B along h_A − h_B of two prompts in "
            "one model (the Steering page asks for a second prompt).",
}


# --- the words of a token -------------------------------------------------------------------------


def in_words(text: str) -> str:
    """Text with every symbol character (an emoji, a sign) followed by its Unicode name in lower
    case: '🐦' → '🐦 bird'; plain letters, digits and punctuation stay as they are."""
    out = []
    for ch in text:
        out.append(ch)
        if unicodedata.category(ch) == "So":
            out.append(f" {unicodedata.name(ch, 'symbol').lower()}")
    return "".join(out)


def first_line(continuation: Continuation) -> str:
    """The continuation up to its first line break with text before it (leading breaks skipped)."""
    text = continuation.text.lstrip("\n")
    return text.split("\n", 1)[0].strip()


def next_token_words(continuation: Continuation) -> str:
    """The next token as a reader would name it: the first character of the greedy continuation,
    byte pieces of one character joined, emoji named ('🐦 bird'); a space or new line in words."""
    if not continuation.characters:
        return "nothing (the model ends its answer)"
    text = continuation.characters[0].text
    if text.startswith("␣"):
        rest = text[1:]
        return f'"{in_words(rest)}" after a space' if rest else "a space"
    if text.startswith("↵"):
        return "a new line"
    return f'"{in_words(text)}"'


# --- which tokens the difference is measured by ---------------------------------------------------


@dataclass(frozen=True)
class Contrast:
    """The answer and wrong tokens the steps measure m = logit[answer] − logit[wrong] by: None, None
    (A's and B's own top-1, as every page's default) when those differ; else the token whose
    probability rises most from B to A and the one that rises most from A to B, the shared top-1
    left out, with a note saying so."""

    answer: int | None
    wrong: int | None
    note: str = ""


def contrast_tokens(loaded, cap_a: Capture, cap_b: Capture, names: tuple[str, str] = ("A", "B")) -> Contrast:
    """The tokens the findings measure the difference by (`Contrast`). It reads only the two runs'
    last logits (two models: over the vocabulary both share, the smaller one)."""
    import torch

    from ..core.tokens import readable_token

    top_a, top_b = int(cap_a.final_logits.argmax()), int(cap_b.final_logits.argmax())
    if top_a != top_b:
        return Contrast(None, None)
    shared = min(len(cap_a.final_logits), len(cap_b.final_logits))
    p_a = torch.softmax(cap_a.final_logits[:shared].double(), -1)
    p_b = torch.softmax(cap_b.final_logits[:shared].double(), -1)
    rise = p_a - p_b
    rise[top_a] = 0.0
    if float(rise.abs().max()) < MIN_RISE:  # the same distribution: nothing to follow
        return Contrast(None, None)
    answer = int(rise.argmax())
    rise[answer] = 0.0
    wrong = int((-rise).argmax())
    words = [readable_token(loaded.tokenizer, i) for i in (top_a, answer, wrong)]
    where = "after" if names == ("A", "B") else "in"  # after a prompt, in a model
    return Contrast(answer, wrong, (
        f"{names[0]} and {names[1]} both predict {words[0]} next, so the steps below follow the tokens whose "
        f"probability moves most between them: {words[1]} (more likely {where} {names[0]}) over {words[2]} "
        f"(more likely {where} {names[1]})."))


# --- the steps, each from the results it reads ---------------------------------------------------


def says_finding(pair: ContinuationPair, names: tuple[str, str], chat: dict | None) -> Finding:
    """What each says (module docstring); `chat`: {"system": …, "prefill": …} in chat mode."""
    lines, numbers = [], []
    for name, cont in zip(names, (pair.a, pair.b), strict=True):
        token, line = next_token_words(cont), in_words(first_line(cont))
        numbers += [(f"next_{name}", token), (f"answer_{name}", line)]
        lines.append(f"{name} would next write {token} and goes on \u201c{line}\u201d")
    sentence = "; ".join(lines) + "."
    parts = []
    if chat and chat.get("prefill"):
        parts.append(f"the answer start \u201c{chat['prefill']}\u201d is typed in, part of each answer above "
                     "(the model did not choose it)")
    if chat and chat.get("system"):
        parts.append(f"a system message \u201c{chat['system']}\u201d comes first")
    if parts:
        sentence += " In chat mode " + " and ".join(parts) + "."
    return Finding("says", sentence, caveat="Greedy continuations: the model's single most likely answer, "
                   "not a sample.", numbers=tuple(numbers))


def stays_top_from(side) -> int | None:
    """The first layer from which the lens's top-1 at the last position is the model's own answer
    at every later layer (None when the last layer's lens disagrees)."""
    answer = side.final[0].id
    layer = None
    for ell in range(len(side.lens) - 1, -1, -1):
        if side.lens[ell][0].id != answer:
            break
        layer = ell
    return layer


def part_finding(comparison: Comparison, names: tuple[str, str]) -> Finding:
    a, b = comparison.a, comparison.b
    match_a, match_b = align(a.token_ids, b.token_ids)
    only_a = [a.tokens[i] for i, m in enumerate(match_a) if m is None]
    only_b = [b.tokens[i] for i, m in enumerate(match_b) if m is None]
    shown_a, shown_b = " ".join(only_a) or "nothing", " ".join(only_b) or "nothing"
    differ = (f"{names[0]} has {shown_a} where {names[1]} has {shown_b}" if only_a or only_b
              else "their tokens are the same")
    stays = [stays_top_from(side) for side in (a, b)]
    stay_text = "; ".join(
        f"{n}'s answer {s.final[0].token} is the lens's top-1 from layer {x} on" if x is not None
        else f"{n}'s answer {s.final[0].token} is not the lens's top-1 at the last layer"
        for n, s, x in zip(names, (a, b), stays, strict=True))
    numbers: list = [("differs_a", " ".join(only_a)), ("differs_b", " ".join(only_b)),
                     ("stays_a", stays[0]), ("stays_b", stays[1])]
    chart: tuple = ()
    if comparison.distance is not None:
        peak = comparison.distance.peak_layer("cosine")
        value = comparison.distance.cosine[peak]
        numbers += [("peak_layer", peak), ("peak_cosine", value)]
        apart = (f"the two states at the last position are furthest apart at layer {peak} "
                 f"(cosine distance {value:.3f})")
        chart = tuple(("cosine distance", str(layer), v)
                      for layer, v in enumerate(comparison.distance.cosine))
    else:
        apart = comparison.note or "the distances between the states are not available here"
    sentence = f"The prompts part where {differ}; {apart}. {stay_text}."
    return Finding("part", sentence, caveat="Logit lens: each layer read through the final norm and "
                   "unembedding, which early layers were not trained for.", numbers=tuple(numbers),
                   chart=chart)


def spaced(token: str) -> str:
    """A readable token as the text to type for it ('␣Paris' → ' Paris')."""
    return token.replace("␣", " ")


def carries_finding(result: PatchResult, note: str = "") -> Finding:
    arrival = arrival_layer(result)
    last = len(result.positions) - 1
    first_row = result.effect[0]
    strongest = max(abs(v) for v in first_row[:last]) if last > 0 else abs(first_row[last])
    weak = result.full_grid and last > 0 and strongest < WEAK_EFFECT
    sentence = f"{note} {patching_reading(result)}".strip()
    if weak:
        sentence += (f" No single position carries it clearly at layer 0 (largest effect {strongest:.2f}): "
                     "the difference is spread over several tokens.")
    metric = (f"Metric {result.metric_label} at B's last position: A {result.metric_a:.2f}, "
              f"B {result.metric_b:.2f}.")
    chart = tuple(("last position", str(layer), row[last]) for layer, row in enumerate(result.effect))
    return Finding(
        "carries", f"{sentence} ({metric})", caveat="Patching writes A's whole residual at one place into B; "
        "an effect of 1 means B then prefers A's answer as much as A does.", status="weak" if weak else "ok",
        numbers=(("arrival_layer", arrival), ("metric_a", result.metric_a), ("metric_b", result.metric_b),
                 ("answer", result.answer.token), ("wrong", result.wrong.token)),
        chart=chart, link=(("patch_layer", str(arrival)), ("patch_position", str(result.positions[last])))
        + ((("answer", spaced(result.answer.token)), ("wrong", spaced(result.wrong.token))) if note else ()),
    )


def component_spec(name: str, groups: list) -> list[Transplant]:
    """The transplant rows of a component named as `top_components` names it ('L3 H2', 'MLP 5',
    'embedding'), for each position group."""
    if name.startswith("MLP "):
        site, head = Site(int(name[4:]), "mlp_out"), None
    elif name == "embedding":
        site, head = Site(0, "resid_pre"), None
    else:
        layer, head_text = name[1:].split(" H")
        site, head = Site(int(layer), "z"), int(head_text)
    return [Transplant(site, b_pos, a_pos, head=head) for b_pos, a_pos in groups]


def patch_named_components(
    loaded, cap_a: Capture, cap_b: Capture, names: tuple[str, ...], *, answer=None, wrong=None,
) -> tuple[tuple[str, float], ...]:
    """Exact patching of each named component alone (A's values written into B at every position,
    or A's last into B's last for prompts of different lengths: `components.position_groups`):
    the normalized effect, equal to that component's cell of `patch_components`' grid."""
    pair = metric_pair(loaded, cap_a, cap_b, answer, wrong)
    groups, _, _ = position_groups(cap_a, cap_b, per_position=False)
    rows = [component_spec(name, groups) for name in names]
    sites = sorted({spec.site for row in rows for spec in row}, key=lambda s: (s.layer, s.kind))
    acts_a = activations_of(loaded, cap_a.token_ids, sites)
    raw = patched_metric(loaded, acts_a, cap_b, rows, pair.metric())
    return tuple((name, pair.normalized(m)) for name, m in zip(names, raw, strict=True))


def writes_finding(attribution: ComponentAttribution, exact: tuple[tuple[str, float], ...]) -> Finding:
    total = attribution.a.linearized_logit_diff - attribution.b.linearized_logit_diff
    top = top_components(attribution, len(exact))
    effects = dict(exact)
    parts = [f"{name}: {delta:+.2f} of {total:.2f}; patching it alone moves B {effects[name]:.0%} of the "
             "way to A" for name, delta in top]
    lead, lead_delta = top[0]  # the largest: weak when exact patching does not bear it out
    disagree = lead_delta * total > 0 and effects[lead] < WEAK_EFFECT / 2
    weak = disagree or max(abs(e) for e in effects.values()) < WEAK_EFFECT
    pair = f"logit[{attribution.answer.token}] − logit[{attribution.wrong.token}]"
    sentence = f"The parts writing most of the difference in {pair} are " + "; ".join(parts) + "."
    if weak:
        sentence += (" Direct attribution and exact patching disagree, or the effects are small: no single "
                     "component writes the difference on its own.")
    numbers = [("total", total)] + [(f"dla {n}", d) for n, d in top]
    numbers += [(f"patch {n}", effects[n]) for n, _ in top]
    chart = tuple(("direct attribution", n, d) for n, d in top)
    chart += tuple(("exact patching × total", n, effects[n] * total) for n, _ in top)
    return Finding("writes", sentence, caveat="Direct logit attribution counts only what a part writes "
                   "straight to the answer; patching also counts what later parts do with it.",
                   status="weak" if weak else "ok", numbers=tuple(numbers), chart=chart)


def concepts_finding(result: FeatureAttribution, arrival: int | None) -> Finding:
    top = result.features[:TOP_FEATURES]
    where = (f"At layer {result.residual}, the SAE layer nearest to where the difference reaches the last "
             f"position (layer {arrival})" if arrival is not None else f"At layer {result.residual}")
    def named(f) -> str:
        promotes = f", promotes {', '.join(f.promotes)}" if f.promotes else ""
        return f"feature {f.feature} ({f.label or 'no label'}{promotes}) {f.score:+.2f}"

    pair = f"logit[{result.answer.token}] − logit[{result.wrong.token}]"
    sentence = (f"{where}, the features carrying {pair} are {'; '.join(named(f) for f in top)}; all "
                f"features together {result.features_sum:+.2f}, the SAE's error {result.error:+.2f}, of an "
                f"estimated {result.total:+.2f} for patching the whole residual there.")
    fvus = [v for v in (result.fvu_a, result.fvu_b) if v is not None]
    poor = bool(fvus) and max(fvus) > POOR_FVU
    big_error = abs(result.error) > BIG_ERROR * abs(result.total)
    if poor or big_error:
        sentence += (" The SAE reconstructs these prompts poorly" if poor else " The SAE's error carries "
                     "much of it") + ", so read the features with care."
    numbers = (("layer", result.residual), ("features_sum", result.features_sum), ("error", result.error),
               ("total", result.total)) + tuple((f"feature {f.feature}", f.score) for f in top)
    chart = tuple(("attribution", f"feature {f.feature}", f.score) for f in top)
    chart += (("attribution", "SAE error", result.error),)
    return Finding("concepts", sentence, caveat="Attribution patching is a first-order estimate; "
                   "a feature's label comes from the SAE's training text, not these prompts.",
                   status="weak" if poor or big_error else "ok", numbers=numbers, chart=chart,
                   link=(("features_layer", str(result.residual)),))


def flip_finding(search: FlipSearch, steered: SteerResult | None, *, named: bool = False) -> Finding:
    """`named`: the answer is not A's own top-1 (`Contrast`), so reproducing it names it."""
    best = search.best
    chart = tuple(("push", str(f.layer), f.push) for f in search.layers if f.push is not None)
    if best is None or steered is None:
        return Finding("flip", search.reading(), caveat="Steering adds α·(h_A − h_B) at every position of "
                       "B.", status="weak", numbers=(("alpha", None), ("layer", None)), chart=chart)
    text = in_words(steered.steered.continuation.text.strip().split("\n", 1)[0])
    sentence = (f"{search.reading()} B then goes on \u201c{text}\u201d; on a neutral text the same push "
                f"changes the next-token distribution by {steered.steered.side_kl:.2f} bits (KL).")
    return Finding(
        "flip", sentence,
        caveat=f"Reproduce with: twinlens steer A B --layer {best.layer} --alpha {best.alpha:g}"
        + (f" --answer '{search.answer.token}'." if named else "."),
        numbers=(("layer", best.layer), ("alpha", best.alpha), ("push", best.push),
                 ("prob_answer", best.prob_answer), ("side_kl_bits", steered.steered.side_kl)),
        chart=chart, link=(("steer_layer", str(best.layer)), ("steer_alpha", f"{best.alpha:g}"),
                           ("steer_mode", search.mode)),
    )


# --- running them in order -----------------------------------------------------------------------


def run_findings(
    loaded, model, run_a, run_b, get: Get, *, names: tuple[str, str] = ("A", "B"), chat: dict | None = None,
    top_k: int = 10, model_b=None, remote: bool = False, has: Has | None = None, keep: Keep | None = None,
) -> Iterator[Finding]:
    """The six findings (module docstring), each as soon as its step has run. `model`, `run_a`,
    `run_b` are what `get` passes on to the analyses (the app's keys, or the loaded model and the
    captures; either has the prompt's `text`, `bos` and `chat`); `loaded` is the model itself, for
    what the steps need to know about it.

    Order: "says" comes first when both answers are written already (`has(fn, *args, **kwargs)`
    tells, e.g. after the Compare page wrote them) and otherwise just before "flip": its two greedy
    continuations are then rows of the flip's steered continuation (`steer_with_answer`: one batch
    costs little more than one row, where two continuations of their own cost two), and
    `keep(value, fn, *args, **kwargs)` hands what that batch wrote to the keys the Continuations and
    Steering pages read, so neither computes it again. Consumers place findings by `step`.

    `model_b`: two-models mode, side b's model (prompt A through model 1 and model 2): patching
    writes model 1's residual into model 2 (models of the same depth and width; otherwise the step
    says so), the steps that compare two prompts in one model say why they do not run.
    `remote`: the model runs on NDIF, where `get` (the NDIF gate) calls only functions reduced there:
    steps 1–3 run reduced (the comparison as the Compare view reduces it in the trace, patching one
    number per cell), steps 4–6 say why not."""
    two_models = model_b is not None and model_b != model
    side_b = model_b if two_models else model
    settings = GenerationSettings(ANSWER_TOKENS)
    sides = ((model, run_a), (side_b, run_b))
    ready = has is not None and all(has(continue_capture, m, run, settings) for m, run in sides)
    with_flip = not (remote or two_models or ready)  # the answers are written in the flip's batch
    if not with_flip:
        yield says_step(get, sides, settings, names, chat)
    try:
        if two_models:
            comparison = get(compare_model_captures, model, model_b, run_a, run_b, top_k=top_k)
        elif remote:  # reduced in the trace, as the Compare view runs it there (the same cached result)
            comparison = get(compare_prompts, model, run_a.text, run_b.text, top_k=top_k, bos=run_a.bos,
                             chat=run_a.chat)
        else:
            comparison = get(compare_captures, model, run_a, run_b, top_k=top_k)
        yield part_finding(comparison, names)
    except TwinlensError as exc:
        yield cannot("part", str(exc))
    arrival = None
    try:
        contrast = get(contrast_tokens, model, run_a, run_b, **({"names": names} if two_models else {}))
    except TwinlensError:
        contrast = Contrast(None, None)
    answer, wrong = contrast.answer, contrast.wrong
    try:
        patch = get(patch_captures, side_b, run_a, run_b, answer=answer, wrong=wrong, model_a=model)
        arrival = arrival_layer(patch)
        yield carries_finding(patch, contrast.note)
    except TwinlensError as exc:
        yield cannot("carries", str(exc))
    if remote or two_models:
        for step in STEPS[3:]:
            yield (cannot(step, ON_NDIF[step], LOCAL_HINT) if remote else cannot(step, TWO_MODELS[step]))
        return
    try:
        attribution = get(attribute_captures, model, run_a, run_b, answer=answer, wrong=wrong)
        names_top = tuple(n for n, _ in top_components(attribution, TOP_COMPONENTS))
        exact = get(patch_named_components, model, run_a, run_b, names_top, answer=answer, wrong=wrong)
        yield writes_finding(attribution, exact)
    except TwinlensError as exc:
        yield cannot("writes", str(exc))
    try:
        layers = tuple(shipped_saes(loaded))
        if not layers:
            raise SettingsError(f"twinlens ships no SAE for {loaded.name}, so there are no features to read.")
        layer = nearest_sae_layer(layers, arrival if arrival is not None else loaded.n_layers // 2)
        features = get(attribution_of_captures, model, run_a, run_b, layer=layer, top=10,
                       **({} if answer is None else {"answer": answer, "wrong": wrong}))
        yield concepts_finding(features, arrival)
    except TwinlensError as exc:
        yield cannot("concepts", str(exc))
    flip: Finding
    written: dict[int, Continuation] = {}  # side (0 A, 1 B) → its answer, written in the flip's batch
    try:
        search = get(steer_to_flip, model, run_a, run_b, **({} if answer is None else {"answer": answer}))
        best = search.best
        steered = None
        if best is not None:
            how = {"layer": best.layer, "alpha": best.alpha, "mode": search.mode, "apply": "all",
                   "answer": answer, "wrong": wrong, "settings": GenerationSettings(STEER_TOKENS)}
            if with_flip:
                both = get(steer_with_answer, model, run_a, run_b, **how)
                steered = both.steer
                written = {1: steered.unsteered.continuation}
                if both.answer_a is not None:
                    written[0] = both.answer_a
                if keep is not None:  # then `get` reads them back: a value kept before this one wins
                    keep(steered, steer_captures, model, run_a, run_b, None, **how, vector_file=None)
                    for side, cont in written.items():
                        keep(cont, continue_capture, *sides[side], settings)
                    written = {}
            else:
                steered = get(steer_captures, model, run_a, run_b, None, **how, vector_file=None)
        flip = flip_finding(search, steered, named=answer is not None)
    except TwinlensError as exc:
        flip = cannot("flip", str(exc))
    if with_flip:
        yield says_step(get, sides, settings, names, chat, written)
    yield flip


def in_order(findings: Iterable[Finding]) -> list[Finding]:
    """Findings in the steps' order (`STEPS`), however they were computed."""
    return sorted(findings, key=lambda f: STEPS.index(f.step))


def says_step(get: Get, sides: tuple[tuple[object, object], ...], settings: GenerationSettings,
              names: tuple[str, str], chat: dict | None, written: dict[int, Continuation] | None = None,
              ) -> Finding:
    """The "says" finding from each side's continuation; `sides`: (model, run) of A and of B, as
    `get` takes them. `written[side]` where the flip's batch wrote it, else through `get`."""
    try:
        a, b = ((written or {}).get(i) or get(continue_capture, m, run, settings)
                for i, (m, run) in enumerate(sides))
        return says_finding(ContinuationPair(a, b), names, chat)
    except TwinlensError as exc:
        return cannot("says", str(exc))
