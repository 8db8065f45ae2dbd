"""Save the README's pictures (docs/screenshot-logit-lens.png, docs/screenshot-features.png) from
the app in a real browser, on the France/Italy pair.

    make screenshots        # or: .venv/bin/python scripts/screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.browser import PAIR_QUERY, ROOT, chromium, open_view, serve, view_url, wait_for_chart  # noqa: E402

SHOTS = {  # file → (page, its title, the heading scrolled to the top or None)
    ROOT / "docs" / "screenshot-logit-lens.png": ("pages/logit_lens.py", "Logit lens", None),
    ROOT / "docs" / "screenshot-features.png": ("pages/features.py", "Features", "Only A (ranked by |Δ|)"),
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, serve() as base, chromium(Path(tmp)) as context:
        page = context.new_page()
        for target, (page_file, title, heading) in SHOTS.items():
            target.parent.mkdir(exist_ok=True)
            open_view(page, view_url(base, page_file, PAIR_QUERY), title)
            wait_for_chart(page)
            if heading:
                page.get_by_role("heading", name=heading).evaluate("h => h.scrollIntoView()")
                page.wait_for_timeout(500)
            page.screenshot(path=target)
            print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
