"""The circuit that carries the difference A − B: edge attribution patching between components,
a pruned circuit, and its faithfulness measured by running it.

The metric is m = logit[answer] − logit[wrong] at B's last position (`patching.metric_pair`).

**Nodes.** Sources write into the residual stream: the embedding, out = residual 0; each attention
head h of layer ℓ, out = z_h W_O[h] (its slice of the output projection, without the projection's
bias, which A and B share); in the coarse view each layer's whole attention, out = hook_attn_out;
each MLP, out = hook_mlp_out. Destinations read the residual stream: the attention of layer ℓ
("attn ℓ", all its heads together), the MLP of layer ℓ and the logits. An edge u → v joins a
source to a destination after it (attention ℓ feeds MLP ℓ in a sequential block).

**What a destination reads, and its gradient.** in_v is the residual v reads; ∂m/∂in_v is the
derivative *through v's branch only*, not through the skip connection around it. From gradients
at sites the backend already has (g(x) = ∂m/∂x at B's run, `Backend.gradients`):

    ∂m/∂in(attn ℓ) = g(residual ℓ) − g(attn_out ℓ)     g(attn_out ℓ) = g of the residual after it
    ∂m/∂in(MLP ℓ)  = g(attn_out ℓ) − g(mlp_out ℓ)       g(mlp_out ℓ)  = g(residual ℓ+1)
    ∂m/∂in(logits) = g(residual L)

(the skip path carries the gradient of the next residual, so the difference is the branch's).
A head's Q, K and V all read the residual entering its block, so the attention's input gradient
is the gradient through every head's Q/K/V paths of that layer, summed: twinlens does not split a
layer's attention *input* by head. Edges out of attention are per head; edges into it go to the
layer's attention. In parallel blocks (GPT-NeoX, GPT-J, Phi: attention and MLP both read residual
ℓ) the two branches read one input and are one destination, "block ℓ", with gradient
g(residual ℓ) − g(residual ℓ+1). Which kind a model has is read off B's gradients: in a parallel
block g(attn_out ℓ) = g(mlp_out ℓ) bit for bit (two summands of one sum), in a sequential one
the attention output's gradient also flows through the MLP.

**Edge attribution patching** (EAP; Syed et al. 2023), B the run and A the source:

    score(u → v) = Σ_positions (out_u^A − out_u^B) · ∂m/∂in_v |_B           (logit units)

the first-order estimate of *path patching* the edge: B's run with in_v += out_u^A − out_u^B
(v alone reads it; everything after v runs freely). Position p of A goes to position p of B, so
the prompts must have equal lengths in tokens. Cost: one forward and backward pass of a batch of
two rows, A (recorded) and B (differentiated). **EAP-IG** (Hanna et al. 2024), k steps: ∂m/∂in_v
is averaged over k runs of B whose embedding (residual 0) is moved toward A's, e_B + α(e_A − e_B)
for α = 0, 1/k, …, (k−1)/k (left Riemann sum; k = 1 is EAP), as k more rows of that one pass.

Identities (tests/unit/test_circuit.py, every family): the scores of all edges into the logits sum
to Δresidual L · g(residual L), the attribution-patching estimate of patching the whole
difference at the last residual; and the edges out of the embedding sum to Δresidual 0 ·
ḡ(residual 0), which under EAP-IG is integrated gradients along the embedding path, → m_A − m_B;
and each score is the derivative of path patching its edge (central differences).

**Faithfulness** of a circuit C (a set of edges): m(C) is the metric of a run in which every edge
in C carries A's values and every edge outside C carries B's. The run starts from A's embedding
and each destination reads

    in_v = Σ_{u: (u → v) ∈ C} out_u^run + Σ_{u: (u → v) ∉ C} out_u^B

where out_u^run is what u computes in this run from its own inputs, so A reaches the logits only
along paths of C (the evaluation of Hanna et al. 2024, A clean and B corrupted). faithfulness =
(m(C) − m_B) / (m_A − m_B): the full graph is A's run (1), the empty circuit B's run (0).
Knocking C out keeps its complement: knockout = faithfulness(¬C), what the rest restores without C.
The run goes block by block through the backend (`run` with start_at and stop_early): each
destination's correction −Σ_{u ∉ C} (out_u^run − out_u^B) is added at its input and taken off
again right after its branch, so the skip path keeps the run's own residual; every circuit of the
curve is a row of one batch (2 passes of one block per layer; 1 for parallel blocks).

**Exact path patching** of one edge: B's run with in_v += out_u^A − out_u^B (added at v's input,
taken off after v's branch), everything else free; the top edges are patched so (one batched
pass) beside their scores, with Pearson r.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core.architecture import affine_rows
from ..core.backend import Intervention
from ..core.capture import Capture
from ..core.errors import ArchitectureError, PromptError, SettingsError
from ..core.models import LoadedModel
from ..core.records import Record
from ..core.sites import Site
from .common.metric import MetricPair, metric_pair

GRANULARITIES = ("heads", "layers")
CHECKED_EDGES = 20  # top edges patched exactly beside their scores
ROW_FLOATS = 1 << 24  # a batch of circuit rows keeps its corrections near 16M floats (64 MB in float32)
CURVE_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)


@dataclass(frozen=True)
class Node(Record):
    """A component of the graph. kind: embed, head, attn, mlp, block (a parallel block's two
    branches as one destination) or logits; layer −1 for the embedding, L for the logits."""

    name: str
    kind: str
    layer: int
    head: int | None = None


@dataclass(frozen=True)
class Edge(Record):
    """score: the EAP (or EAP-IG) estimate of m(B with this edge patched) − m_B, in logit units;
    exact: that patched metric's change, for the edges patched exactly (else None)."""

    source: str
    target: str
    score: float
    exact: float | None = None


@dataclass(frozen=True)
class CurvePoint(Record):
    """The circuit of the `size` top edges (by |score|): the share of Σ|score| they hold, its
    faithfulness (m(C) − m_B)/(m_A − m_B) and its knockout, the faithfulness of the rest."""

    size: int
    share: float
    faithfulness: float
    knockout: float


@dataclass(frozen=True)
class Circuit(MetricPair):
    """Edge attribution patching for the pair, the pruned circuit and its checks (the metric's
    fields: `MetricPair`).

    granularity: "heads" (a node per head) or "layers" (a node per layer's attention)
    ig_steps: 1 = EAP, k > 1 = EAP-IG with k steps
    nodes: every node; edges: every edge, largest |score| first
    size: how many top edges make the circuit; faithfulness, knockout: its own (see CurvePoint)
    curve: the same over circuit sizes (0 = empty, last = every edge)
    into_logits: Σ score(u → logits); whole_atp: Δresidual L · ∂m/∂residual L at B (equal: tested)
    pearson_r: agreement of the checked edges' scores with their exact path patching
    """

    granularity: str
    ig_steps: int
    parallel: bool
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    size: int
    faithfulness: float
    knockout: float
    curve: tuple[CurvePoint, ...]
    into_logits: float
    whole_atp: float
    pearson_r: float | None
    note: str

    def circuit_edges(self) -> tuple[Edge, ...]:
        return self.edges[: self.size]


@dataclass(frozen=True, eq=False)
class EdgeGraph:
    """Sources and destinations with their order: a source at stage s feeds destinations at stages
    > s (embedding 0; attention ℓ 2ℓ+1; MLP ℓ 2ℓ+2; a parallel block ℓ reads at 2ℓ+1; logits 2L+1)."""

    sources: tuple[Node, ...]
    dests: tuple[Node, ...]
    allowed: torch.Tensor  # [n_src, n_dst] bool
    parallel: bool
    heads: bool
    n_heads: int


def _parallel(grads: dict, n_layers: int) -> bool:
    """Whether the blocks are parallel (attention and MLP both read residual ℓ and are added
    together, GPT-NeoX, GPT-J, Phi, Cohere), read off B's gradients: there the attention and MLP
    outputs are summands of one sum and get the same gradient, bit for bit; in a sequential block
    the attention output's gradient also flows through the MLP."""
    return all(torch.equal(grads[Site(layer, "attn_out")], grads[Site(layer, "mlp_out")])
               for layer in range(n_layers))


def _check_graph(loaded: LoadedModel, granularity: str) -> None:
    """Refuse a granularity this model cannot be read at, before any pass."""
    if granularity not in GRANULARITIES:
        raise SettingsError(f"Unknown granularity '{granularity}': use 'heads' or 'layers'.")
    arch, n = loaded.architecture, loaded.n_layers
    parts = [arch.block_parts(layer) for layer in range(n)]  # refuses a family whose parts are unknown
    heads = granularity == "heads"
    if heads and arch.n_heads is None:
        raise ArchitectureError(f"'{arch.family}' does not say how many attention heads it has.")
    if heads and any(p.attn_out is not p.attention for p in parts):
        raise ArchitectureError(
            f"'{arch.family}' normalizes each attention output before adding it, so its heads' outputs "
            "do not add up to what the residual stream receives: use the per-layer view."
        )


def _graph(loaded: LoadedModel, granularity: str, parallel: bool) -> EdgeGraph:
    """The nodes and the edges allowed between them (`_check_graph` has passed)."""
    arch, n = loaded.architecture, loaded.n_layers
    heads = granularity == "heads"
    sources, src_stage = [Node("embed", "embed", -1)], [0]
    dests, dst_stage = [], []
    for layer in range(n):
        if heads:
            sources += [Node(f"L{layer} H{h}", "head", layer, h) for h in range(arch.n_heads)]
            src_stage += [2 * layer + 1] * arch.n_heads
        else:
            sources.append(Node(f"attn {layer}", "attn", layer))
            src_stage.append(2 * layer + 1)
        sources.append(Node(f"MLP {layer}", "mlp", layer))
        src_stage.append(2 * layer + 2)
        if parallel:
            dests.append(Node(f"block {layer}", "block", layer))
            dst_stage.append(2 * layer + 1)
        else:
            dests += [Node(f"attn {layer}", "attn", layer), Node(f"MLP {layer}", "mlp", layer)]
            dst_stage += [2 * layer + 1, 2 * layer + 2]
    dests.append(Node("logits", "logits", n))
    dst_stage.append(2 * n + 1)
    allowed = torch.tensor(src_stage)[:, None] < torch.tensor(dst_stage)[None, :]
    return EdgeGraph(tuple(sources), tuple(dests), allowed, parallel, heads, arch.n_heads or 1)


def _reads(dest: Node, n_layers: int) -> tuple[Site, Site | None]:
    """(where v's input is changed, where the change is taken off again after v's branch)."""
    layer = dest.layer
    if dest.kind == "logits":
        return Site.residual_at(n_layers, n_layers), None
    if dest.kind == "mlp":
        return Site(layer, "attn_out"), Site(layer, "mlp_out")
    after = Site(layer, "mlp_out") if dest.kind == "block" else Site(layer, "attn_out")
    return Site.residual_at(layer, n_layers), after


def _input_gradients(graph: EdgeGraph, grads: dict, n_layers: int) -> torch.Tensor:
    """∂m/∂in_v through v's branch only, [n_dst, batch, pos, d] (see the module docstring)."""
    found = []
    for dest in graph.dests:
        add, after = _reads(dest, n_layers)
        g = grads[add].double()
        found.append(g - grads[after].double() if after is not None else g)
    return torch.stack(found)


def _projection(loaded: LoadedModel, layer: int) -> torch.Tensor:
    """W_O of layer ℓ as [heads, d_head, d_model] float32: the output projection's linear part A
    (y = A z + b, `affine_rows`) transposed, split by head."""
    parts = loaded.architecture.block_parts(layer)
    try:
        matrix, _ = affine_rows(parts.out_proj, "attention output projection")
    except ArchitectureError as exc:
        raise ArchitectureError(f"{exc} Use the per-layer view.") from exc
    w = matrix.T
    return w.detach().float().reshape(loaded.architecture.n_heads, -1, w.shape[-1])


def _attn_site(graph: EdgeGraph, layer: int) -> Site:
    return Site(layer, "z" if graph.heads else "attn_out")


def _sites(heads: bool, n_layers: int) -> list[Site]:
    """Every site the scores need: residuals 0 … L, each layer's attn_out, mlp_out (and z by head)."""
    sites = [Site.residual_at(r, n_layers) for r in range(n_layers + 1)]
    for layer in range(n_layers):
        sites += [Site(layer, "attn_out"), Site(layer, "mlp_out")]
        if heads:
            sites.append(Site(layer, "z"))
    return sites


def _attention_outputs(graph: EdgeGraph, acts: dict, layer: int, w_o: dict) -> torch.Tensor:
    """The outputs of `layer`'s attention sources [batch, k, pos, d] from activations with a batch
    dimension: by head z_h W_O[h] (k = heads), or the whole hook_attn_out (k = 1)."""
    if graph.heads:
        z = acts[Site(layer, "z")].float()  # [batch, pos, heads, d_head]
        return torch.einsum("bphe,hed->bhpd", z, w_o[layer].to(z.device))
    return acts[Site(layer, "attn_out")].float()[:, None]


def _source_outputs(graph: EdgeGraph, acts: dict, n_layers: int, w_o: dict) -> torch.Tensor:
    """Every source's output [batch, n_src, pos, d] float32, in `graph.sources` order."""
    found = [acts[Site.residual_at(0, n_layers)].float()[:, None]]
    for layer in range(n_layers):
        found += [_attention_outputs(graph, acts, layer, w_o), acts[Site(layer, "mlp_out")].float()[:, None]]
    return torch.cat(found, dim=1)


def _check_pair(cap_a: Capture, cap_b: Capture, ig_steps: int) -> None:
    if cap_a.n_tokens != cap_b.n_tokens:
        raise PromptError(
            f"A has {cap_a.n_tokens} tokens and B has {cap_b.n_tokens}: edge attribution patches A's "
            "outputs into B position by position, so the prompts must have the same length in tokens."
        )
    if not 1 <= ig_steps <= 256:
        raise SettingsError(f"EAP-IG takes 1 to 256 steps, not {ig_steps} (1 is plain EAP).")


@dataclass(frozen=True, eq=False)
class EdgeScores:
    """Every edge's score and what the runs that check them need (`edge_scores`).

    scores[s, v]: the score of source s → destination v (graph order), float64 on the CPU, 0 where
    no edge; out_a, out_b: each source's output [n_src, pos, d_model] float32 in A and in B;
    w_o: layer → W_O [heads, d_head, d_model] (per-head view); into_logits, whole_atp, embed_sum:
    the identities of the module docstring."""

    graph: EdgeGraph
    scores: torch.Tensor  # [n_src, n_dst] float64, 0 where no edge
    out_a: torch.Tensor  # [n_src, pos, d]
    out_b: torch.Tensor
    w_o: dict
    into_logits: float
    whole_atp: float
    embed_sum: float  # Σ_v score(embed → v)


def edge_scores(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, pair: MetricPair, *, granularity: str = "heads",
    ig_steps: int = 1,
) -> EdgeScores:
    """EAP (ig_steps = 1) or EAP-IG scores of every edge from ONE forward and backward pass whose
    batch holds A (row 0, recorded only: the metric reads the other rows) and B (row 1; for EAP-IG
    rows 1…k, B with its embedding moved toward A's)."""
    _check_pair(cap_a, cap_b, ig_steps)
    _check_graph(loaded, granularity)
    n = loaded.n_layers
    sites = _sites(granularity == "heads", n)
    ids = torch.tensor([list(cap_a.token_ids), list(cap_b.token_ids)], dtype=torch.long)
    embed = Site.residual_at(0, n)
    interventions: tuple[Intervention, ...] = ()
    if ig_steps > 1:
        alphas = torch.arange(ig_steps, dtype=torch.float32)[:, None, None] / ig_steps
        e_a, e_b = loaded.backend.run(ids, sites=[embed], stop_early=True,
                                      reduce=lambda run: run.activations[embed].float())
        moved = e_b + alphas.to(e_b.device) * (e_a - e_b)  # [k, pos, d]
        interventions = (Intervention(embed, "replace", moved, rows=tuple(range(1, ig_steps + 1))),)
        ids = torch.cat([ids[:1], ids[1:].expand(ig_steps, -1)])
    metric = pair.metric()
    found = loaded.backend.gradients(ids, sites, lambda logits: metric(logits[1:]).sum(), interventions)
    acts_a = {site: act[:1] for site, act in found.run.activations.items()}
    acts_b = {site: act[1:2] for site, act in found.run.activations.items()}
    grads = {site: g[1:].mean(0, keepdim=True) for site, g in found.grads.items()}
    graph = _graph(loaded, granularity, _parallel(grads, n))
    w_o = {layer: _projection(loaded, layer) for layer in range(n)} if graph.heads else {}
    out_a = _source_outputs(graph, acts_a, n, w_o)[0]
    out_b = _source_outputs(graph, acts_b, n, w_o)[0]
    g_in = _input_gradients(graph, grads, n)[:, 0]  # [n_dst, pos, d]
    scores = (out_a - out_b).double().flatten(1) @ g_in.to(out_a.device).flatten(1).T  # Σ over pos, d
    scores = scores * graph.allowed.to(scores.device)
    final = Site.residual_at(n, n)
    delta_final = acts_a[final][0].double() - acts_b[final][0].double()
    return EdgeScores(
        graph=graph, scores=scores.cpu(), out_a=out_a, out_b=out_b, w_o=w_o,
        into_logits=float(scores[:, -1].sum()),
        whole_atp=float((delta_final * grads[final][0].double()).sum()),
        embed_sum=float(scores[0].sum()),
    )


def _ranked(found: EdgeScores) -> list[tuple[int, int]]:
    """Every edge (source, destination index), largest |score| first."""
    s, v = torch.nonzero(found.graph.allowed, as_tuple=True)
    order = torch.argsort(found.scores[s, v].abs(), descending=True, stable=True)
    return list(zip(s[order].tolist(), v[order].tolist(), strict=True))


def faithfulness_runs(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, pair: MetricPair, found: EdgeScores,
    keep: torch.Tensor,
) -> torch.Tensor:
    """m(C) [rows] float64 for each row's circuit keep[row] [n_src, n_dst] (True: the edge carries
    A's values), by the block-by-block run of the module docstring; all rows in one batch, whose
    corrections take n_dst · rows · pos · d_model floats (`find_circuit` bounds it by ROW_FLOATS)."""
    graph, n = found.graph, loaded.n_layers
    rows = keep.shape[0]
    drop = ((~keep) & graph.allowed).float().to(found.out_b.device)  # [rows, n_src, n_dst]
    ids = torch.tensor([list(cap_a.token_ids)], dtype=torch.long).expand(rows, -1)
    out_b = found.out_b
    acc = torch.zeros(len(graph.dests), rows, *out_b.shape[1:], device=out_b.device)
    index = {node.name: i for i, node in enumerate(graph.dests)}

    def spread(first: int, deltas: torch.Tensor) -> None:
        """Corrections of the sources first … first+k−1 (their outputs minus B's, [rows, k, pos, d])."""
        k = deltas.shape[1]
        acc.sub_(torch.einsum("rkv,rkpd->vrpd", drop[:, first : first + k], deltas))

    spread(0, (found.out_a[0] - out_b[0]).expand(rows, 1, *out_b.shape[1:]))
    stream = found.out_a[0].expand(rows, *out_b.shape[1:]).clone()  # residual 0: A's embedding
    k = graph.n_heads if graph.heads else 1  # attention sources per layer
    first = 1  # index of the layer's first attention source
    for layer in range(n):
        reader = index[f"block {layer}" if graph.parallel else f"attn {layer}"]
        entry = Intervention(Site.residual_at(layer, n), "replace", stream + acc[reader])
        mlp_site, attn_site = Site(layer, "mlp_out"), _attn_site(graph, layer)
        after = Site.residual_at(layer + 1, n)

        def block(changes: list[Intervention], sites: list[Site], entry=entry, layer=layer) -> dict:
            return loaded.backend.run(ids, sites=sites, interventions=[entry, *changes], start_at=layer,
                                      stop_early=True, reduce=lambda run: dict(run.activations))

        if graph.parallel:  # one input for both branches, taken off after the MLP's
            taken_off = acc[reader]
            acts = block([Intervention(mlp_site, "add", -taken_off)], [attn_site, mlp_site, after])
            spread(first, _attention_outputs(graph, acts, layer, found.w_o) - out_b[first : first + k])
        else:  # the attention first: the MLP's input depends on what it wrote
            acts = block([], [attn_site])
            spread(first, _attention_outputs(graph, acts, layer, found.w_o) - out_b[first : first + k])
            taken_off = acc[index[f"MLP {layer}"]]
            acts = block([Intervention(Site(layer, "attn_out"), "add", taken_off - acc[reader]),
                          Intervention(mlp_site, "add", -taken_off)], [mlp_site, after])
        mlp_out = acts[mlp_site].float() + taken_off  # the MLP's own output, before its correction
        spread(first + k, (mlp_out - out_b[first + k])[:, None])
        stream = acts[after].float()
        first += k + 1
    final = (stream + acc[-1])[:, -1]
    return pair.metric()(loaded.backend.lens_logits(final)).cpu()


def path_patch(
    loaded: LoadedModel, cap_b: Capture, pair: MetricPair, found: EdgeScores,
    edges: Sequence[tuple[int, int]], *, scale: float = 1.0,
) -> torch.Tensor:
    """m of B's run with, for each edge (source, destination index) as one row, in_v +=
    scale · (out_u^A − out_u^B) (added at v's input, taken off after v's branch): [len(edges)]
    float64, one batched pass. scale = 1 is exact path patching of the edge."""
    n = loaded.n_layers
    by_site: dict[Site, tuple[list[int], list[torch.Tensor]]] = {}
    for row, (source, dest) in enumerate(edges):
        delta = scale * (found.out_a[source] - found.out_b[source])
        add, after = _reads(found.graph.dests[dest], n)
        for site, value in ((add, delta), (after, -delta)):
            if site is not None:
                rows_, values = by_site.setdefault(site, ([], []))
                rows_.append(row)
                values.append(value)
    interventions = [Intervention(site, "add", torch.stack(values), rows=tuple(rows_))
                     for site, (rows_, values) in by_site.items()]
    ids = torch.tensor([list(cap_b.token_ids)], dtype=torch.long).expand(len(edges), -1)
    metric = pair.metric()
    return loaded.backend.run(ids, interventions=interventions, reduce=lambda run: metric(run.logits).cpu())


def _keep_top(found: EdgeScores, ranked: list[tuple[int, int]], size: int) -> torch.Tensor:
    keep = torch.zeros_like(found.graph.allowed)
    if size:
        s, v = zip(*ranked[:size], strict=True)
        keep[list(s), list(v)] = True
    return keep


def circuit_size(
    found: EdgeScores, ranked: list[tuple[int, int]], edges: int | None, share: float | None
) -> int:
    """How many top edges make the circuit: `edges` of them, or the fewest whose |score| sum to
    `share` of all edges' (default: 50 edges, or every edge when there are fewer)."""
    total = len(ranked)
    if share is not None:
        if not 0 < share <= 1:
            raise SettingsError(f"The share of the total score must be above 0 and at most 1, not {share}.")
        size = torch.tensor([abs(float(found.scores[s, v])) for s, v in ranked], dtype=torch.float64)
        cumulative = size.cumsum(0) / size.sum().clamp_min(1e-300)
        return min(total, int(torch.searchsorted(cumulative, torch.tensor(share - 1e-12)).item()) + 1)
    if edges is None:
        return min(50, total)
    if edges < 0:
        raise SettingsError(f"A circuit has 0 edges or more, not {edges}.")
    return min(edges, total)


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    a, b = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else None


def find_circuit(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, *, answer: str | int | None = None,
    wrong: str | int | None = None, granularity: str = "heads", ig_steps: int = 1, edges: int | None = None,
    share: float | None = None, checked: int = CHECKED_EDGES,
) -> Circuit:
    """Score every edge (EAP or EAP-IG), keep the top `edges` (or `share` of the total |score|),
    measure the circuit's faithfulness and knockout by running it, the same over a curve of sizes
    (one batch), and patch the top `checked` edges exactly (one batched pass)."""
    _check_pair(cap_a, cap_b, ig_steps)
    pair = metric_pair(loaded, cap_a, cap_b, answer, wrong)
    found = edge_scores(loaded, cap_a, cap_b, pair, granularity=granularity, ig_steps=ig_steps)
    ranked = _ranked(found)
    size = circuit_size(found, ranked, edges, share)
    sizes = sorted({0, size, len(ranked), *(s for s in CURVE_SIZES if s < len(ranked))})
    keeps = [_keep_top(found, ranked, s) for s in sizes]
    allowed = found.graph.allowed
    rows = torch.stack([*keeps, *(allowed & ~k for k in keeps)])
    per_row = len(found.graph.dests) * found.out_b[0].numel()  # the corrections of one row
    step = max(1, ROW_FLOATS // per_row)
    m = torch.cat([faithfulness_runs(loaded, cap_a, cap_b, pair, found, rows[i : i + step])
                   for i in range(0, len(rows), step)])
    effect = [pair.normalized(float(v)) for v in m]
    magnitude = torch.tensor([abs(float(found.scores[s, v])) for s, v in ranked], dtype=torch.float64)
    total = float(magnitude.sum()) or 1.0
    curve = tuple(
        CurvePoint(s, float(magnitude[:s].sum()) / total, effect[i], effect[len(sizes) + i])
        for i, s in enumerate(sizes)
    )
    top = ranked[: min(checked, len(ranked))]
    exact = (path_patch(loaded, cap_b, pair, found, top) - pair.metric_b).tolist() if top else []
    sources, dests = found.graph.sources, found.graph.dests
    edge_list = tuple(
        Edge(sources[s].name, dests[v].name, float(found.scores[s, v]), exact[i] if i < len(exact) else None)
        for i, (s, v) in enumerate(ranked)
    )
    own = curve[sizes.index(size)]
    return Circuit(
        **pair.shared(), granularity=granularity, ig_steps=ig_steps,
        parallel=found.graph.parallel, nodes=tuple(dict.fromkeys((*sources, *dests))), edges=edge_list,
        size=size,
        faithfulness=own.faithfulness, knockout=own.knockout, curve=curve,
        into_logits=found.into_logits, whole_atp=found.whole_atp,
        pearson_r=_pearson([e.score for e in edge_list[: len(exact)]], exact) if len(exact) > 1 else None,
        note=_note(found.graph, ig_steps),
    )


def _note(graph: EdgeGraph, ig_steps: int) -> str:
    how = "EAP" if ig_steps == 1 else f"EAP-IG with {ig_steps} steps"
    into = ("Attention and MLP read the same residual in this family's parallel blocks, so edges into them "
            "go to 'block ℓ'. " if graph.parallel else "")
    heads = ("Edges leave single heads but enter a layer's attention as a whole (all its heads' Q/K/V). "
             if graph.heads else "")
    return (f"Scores are {how} estimates of path patching each edge (logit units). {into}{heads}"
            "Faithfulness runs B's graph with the circuit's edges carrying A's values.")

