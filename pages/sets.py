"""Sets: two sets of prompts compared layer by layer — probes, distances, the lens, the CAA vector."""

from __future__ import annotations

from lib.app import sets_view, views

views.page(
    "Sets",
    """
One pair of prompts is an anecdote. Here two whole **sets** of prompts go through the model — 50
happy and 50 angry sentences, say — and this page shows, layer by layer, whether the model holds
the two kinds apart, and how surely.

Each prompt is read at one token (the last, by default), at every layer.

- **Linear probe**: a logistic regression learns to tell A's states from B's at that layer (on
  standardized states), and is scored on prompts it did not see (k-fold cross-validation; a pair's
  two prompts always sit in the same fold). **Chance** is the same probe on shuffled labels. An
  accuracy near 1 means the two sets are *linearly separable* there; near chance, not.
- **Distance**: the mean cosine distance between the sets' states (paired: between each pair;
  unpaired: over every A–B combination), with a 95 % bootstrap interval.
- **The lens over the sets**: the tokens whose mean next-token probability (through the logit
  lens) differs most between the sets, and how often each set's final answer is already the top
  token at that layer. On a small model it costs about as much as running the prompts; untick it
  to leave it out.
- **The steering vector**: the mean of h_A − h_B at a layer (contrastive activation addition,
  Rimsky et al. 2024). Download it and load it on the **Steering** page as a vector file.
- **Rows**: each pair (or prompt) at that layer; pick a pair and open it on every page.

The model, BOS and chat settings are the sidebar's. Up to 1,000 prompts a set.
""",
)

request = sets_view.model_request()
sets = sets_view.sets_form()
if sets is not None:
    sets_view.draw(request, sets_view.measured(request, sets))
