"""Markdown summaries of evaluation results."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-markdown table; floats with two decimals, NaN as '-'."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(results: Mapping[str, Mapping], title: str = "Evaluation") -> str:
    """One overview row per benchmark (`score_predictions` results by name), then per-category tables."""
    overview = []
    for name, r in results.items():
        g = r.get("grounding") or {}
        overview.append([name, r["count"], r["accuracy"], r["format_rate"], r["answered_rate"],
                         g.get("mIoU", float("nan")), g.get("R@0.3", float("nan")),
                         g.get("R@0.5", float("nan")), g.get("R@0.7", float("nan"))])
    parts = [f"# {title}", "",
             markdown_table(["benchmark", "N", "accuracy %", "format %", "answered %", "mIoU", "R@0.3", "R@0.5",
                             "R@0.7"], overview)]
    for name, r in results.items():
        cats = r.get("per_category", {})
        if len(cats) > 1:
            rows = [[c, v["count"], v["accuracy"]] for c, v in cats.items()]
            parts += ["", f"## {name}: per category", "", markdown_table(["category", "N", "accuracy %"], rows)]
    return "\n".join(parts) + "\n"


def write_summary(path: str, results: Mapping[str, Mapping], title: str = "Evaluation") -> str:
    """Writes `summary_markdown` to `path` (directories created); returns the text."""
    text = summary_markdown(results, title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text
