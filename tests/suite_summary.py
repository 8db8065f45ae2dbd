"""What `make test` says at its end about skipped tests (tests/conftest.py prints it)."""

from __future__ import annotations


def skip_summary(reports) -> list[str]:
    """One line per reason a test was skipped, most frequent first: 'N skipped: reason'."""
    reasons: dict[str, int] = {}
    for report in reports:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, (tuple, list)) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    return [f"{n} skipped: {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
