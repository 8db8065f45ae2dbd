"""Compare: both prompts' tokens, the distance between them per layer, both logit lenses; Save."""

from __future__ import annotations

from lib.app import answers, lens_choice, ui, views
from lib.app import compare_frames as frames

views.page(
    "Compare",
    """
The two prompts go through the same model, and this page shows where inside it they start to differ.
The model's guess for the next word is shown for both, with its confidence.

Each prompt flows through the model layer by layer; the **residual stream** is the model's running
state. *Layer 0* is just the embedded last token, the last layer is what the model predicts from.

- **Distance per layer**: how different the two states are at the last token. *Cosine distance* is 0
  when the two point the same way; *relative L2* is the length of the difference compared to their
  own length (about 1.4 for unrelated states). Both are 0 for identical states.
- **Logit lens**: what the model *would* say next if it stopped at that layer (the final norm and the
  unembedding applied to that layer's state). The top row is the model's own prediction; the
  bottom row (layer 0) usually just echoes the input token.
- **Next token**: when it is only part of a character (an emoji is 2–4 byte pieces such as
  `<F0 9F>`), the character it completes to is shown too: the model's greedy continuation of it.
- **Answer**: the first line of what the model writes after each prompt (greedy). In chat mode the
  system message and the start of the answer you typed are shown with it, highlighted: the model
  continues from them, it did not choose them.
- **Two models** (switch in the sidebar): one prompt through model 1 and model 2, which must share a
  tokenizer — a base model and its fine-tune, say. The distances compare their states at the same
  layer, so they exist only when both have as many layers of the same width.
"""
)


found = ui.require_comparison()
if found is not None:
    request, model, comparison = found
    uses = lens_choice.lens_uses(request, model, ui.get_model(request.runs[1].model))
    views.lens_notes(uses)
    sides = zip(views.sides(request, comparison), (comparison.a, comparison.b), strict=True)
    places = views.draw_comparison(comparison, [answers.completes_to(side, result.final[0].id)
                                                  for side, result in sides])
    data = {**comparison.to_dict(), "lens": lens_choice.lens_export(uses, frames.side_names(comparison))}
    views.download_buttons("comparison", request, data, frames.comparison_tables(comparison))
    views.save_form(request, comparison)
    answers.show_answers(views.sides(request, comparison), request.chat_settings, places)
