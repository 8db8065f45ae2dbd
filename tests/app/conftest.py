"""Fixtures for AppTest page tests (helpers in app_helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from app_helpers import app  # noqa: E402,F401  (the fixture)
