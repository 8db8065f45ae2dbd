"""twinlens: where, inside a language model, two prompts part ways.

The library never imports Streamlit (except `lib.ui`, the small UI-helpers module).
"""

__version__ = "0.1.0"
