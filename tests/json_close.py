"""Comparing two JSON documents (CLI outputs of two backends or two device maps) with a float tolerance."""

from __future__ import annotations


def json_close(a: object, b: object, tol: float = 1e-5) -> bool:
    """`a` and `b` have the same structure and values, floats within `tol`."""
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= tol
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(
            json_close(x, y, tol) for x, y in zip(a, b, strict=True)
        )
    return a == b
