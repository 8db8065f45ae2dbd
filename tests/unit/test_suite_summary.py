"""`make test`'s last lines say how many tests were skipped and why (tests/conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace

from suite_summary import skip_summary


def _skipped(reason: str):
    return SimpleNamespace(longrepr=("tests/e2e/test_browser.py", 28, f"Skipped: {reason}"))


def test_skips_are_counted_by_reason_most_frequent_first():
    reports = [_skipped("no Chromium at /usr/bin/chromium")] * 3 + [_skipped("needs CUDA")]
    assert skip_summary(reports) == ["3 skipped: no Chromium at /usr/bin/chromium", "1 skipped: needs CUDA"]


def test_no_skips_no_lines():
    assert skip_summary([]) == []


def test_reports_from_test_workers_count_too():
    """pytest-xdist hands the controller each skip's location as a list, not a tuple."""
    worker = SimpleNamespace(longrepr=["tests/e2e/test_browser.py", 28, "Skipped: no Chromium"])
    assert skip_summary([worker, _skipped("no Chromium")]) == ["2 skipped: no Chromium"]
