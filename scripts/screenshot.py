"""Save docs/screenshot-logit-lens.png (the README's picture) from the app in a real browser.

    make screenshots        # or: .venv/bin/python scripts/screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.browser import PAIR_QUERY, ROOT, chromium, open_view, serve, view_url, wait_for_chart  # noqa: E402

TARGET = ROOT / "docs" / "screenshot-logit-lens.png"


def main() -> None:
    TARGET.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, serve() as base, chromium(Path(tmp)) as context:
        page = context.new_page()
        open_view(page, view_url(base, "pages/logit_lens.py", PAIR_QUERY), "Logit lens")
        wait_for_chart(page)
        page.screenshot(path=TARGET)
    print(f"wrote {TARGET.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
