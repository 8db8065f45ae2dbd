"""Drive the app like a user who only looks around after a comparison: switch to every page and
move every display control there, without touching the prompts.

Used by tests/app/test_view_changes.py and by the benchmark (bench/run.py, figure p5).
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

ROOT = Path(__file__).resolve().parents[2]
_KINDS = ("checkbox", "toggle", "selectbox", "radio", "slider", "number_input")


def dashboard_app(timeout: float = 600) -> AppTest:
    """An AppTest of dashboard.py outside pytest, with the page manager the `app` fixture uses."""
    from app_helpers import _NavigationPagesManager

    app_test_module.PagesManager = _NavigationPagesManager
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=timeout)


def page_files() -> list[str]:
    """Every page of the app, as the path `AppTest.switch_page` takes."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


# Pages whose first view for a comparison runs analyses by design (issue 23: Findings runs every
# step after Compare; issue 24: Features ranks by attribution, one backward pass, at the layer the
# patching grid names). What they computed is cached: views after the first run nothing.
PAGES_THAT_RUN = ("pages/findings.py", "pages/features.py")


def first_views(at: AppTest) -> None:
    """Open each of `PAGES_THAT_RUN` once, so that what follows measures view changes only."""
    for page in PAGES_THAT_RUN:
        at.switch_page(page).run()


def _moved(widget) -> bool:
    """Set `widget` to another value than its current one; False when it has no other value."""
    kind, value = widget.type, widget.value
    if kind in ("checkbox", "toggle"):
        widget.set_value(not value)
    elif kind == "selectbox" and len(widget.options) > 1:
        widget.select_index((widget.index + 1) % len(widget.options) if widget.index is not None else 0)
    elif kind == "radio" and len(widget.options) > 1 and value in widget.options:  # shown as its value
        widget.set_value(widget.options[(widget.options.index(value) + 1) % len(widget.options)])
    elif kind == "slider" and isinstance(value, int | float) and widget.min != widget.max:
        widget.set_value(widget.min if value != widget.min else widget.max)
    elif kind == "number_input" and value is not None:
        widget.decrement() if widget.max is not None and value >= widget.max else widget.increment()
    else:
        return False
    return True


def _display_controls(at: AppTest) -> list:
    """Widgets of the page body (not the sidebar's request form, not inside any form)."""
    return [w for kind in _KINDS for w in getattr(at.main, kind) if not getattr(w, "form_id", "")]


def look_around(at: AppTest) -> dict:
    """Visit every page and move each of its display controls once (one rerun per change).

    Returns what was done: pages visited, controls moved, and any exceptions the app showed.
    """
    moved: list[str] = []
    exceptions: list[str] = []
    for page in page_files():
        at.switch_page(page).run()
        exceptions += [e.value for e in at.exception]
        for index in range(len(_display_controls(at))):
            controls = _display_controls(at)  # the tree is rebuilt by every run
            if index < len(controls) and _moved(controls[index]):
                moved.append(f"{page}: {controls[index].type} '{controls[index].label}'")
                at.run()
                exceptions += [e.value for e in at.exception]
    return {"pages": page_files(), "controls_moved": moved, "exceptions": exceptions}
