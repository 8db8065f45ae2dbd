"""What twinlens writes for people to keep: strict JSON and CSV files of a view's results."""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd


def json_safe(value: object) -> object:
    """`value` with every non-finite float (an infinite KL, say) as the string "inf", "-inf" or "nan",
    which strict JSON readers accept; everything else unchanged."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def to_json(data: object, indent: int | None = 2) -> str:
    """Strict JSON text of `data` (UTF-8 kept as text; non-finite floats as strings)."""
    return json.dumps(json_safe(data), ensure_ascii=False, indent=indent, allow_nan=False)


SLUG_WORDS = 4  # words of prompt A in an export's file name


def file_stem(name: str, texts: Sequence[str]) -> str:
    """`name`, the first words of the first text in lowercase ASCII and a short hash of all the
    texts, e.g. 'distances-you-have-happy-emotion-3f2a1c': two exports of different prompts never
    share a file name, and the name says which prompts they are."""
    words = re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKD", texts[0] if texts else "").lower()
                       .encode("ascii", "ignore").decode())
    digest = hashlib.sha1("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return "-".join([name, *words[:SLUG_WORDS], digest])


@dataclass(frozen=True)
class ExportFile:
    """One file a page offers for download."""

    file_name: str
    label: str
    content: str
    mime: str


def export_files(
    name: str, request: Mapping, data: Mapping, tables: Mapping[str, pd.DataFrame]
) -> list[ExportFile]:
    """`data` with the request as `<name>.json`, then each table as `<name>-<table>.csv`."""
    document = to_json({"request": dict(request), **data})
    return [ExportFile(f"{name}.json", "JSON", document, "application/json")] + [
        ExportFile(f"{name}-{table}.csv", f"{table} (CSV)", frame.to_csv(index=False), "text/csv")
        for table, frame in tables.items()
    ]
