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


def _ids(ids: Sequence[str], limit: int) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... and {len(ids) - limit} more" if len(ids) > limit else "")


def coverage_line(name: str, r: Mapping, limit: int = 10) -> str:
    """What a benchmark's accuracy is over, and which questions (first `limit` ids) were missing or skipped."""
    expected, scored, missing, skipped = r["expected"], r["count"], r["missing"], r["skipped"]
    if scored == expected:
        return f"- {name}: all {expected} questions scored."
    parts = [f"- {name}: {scored} of {expected} questions scored (the others count as wrong in accuracy)"]
    if missing:
        parts.append(f"{len(missing)} missing (no prediction): {_ids(list(missing), limit)}")
    if skipped:
        reasons = [f"{i} ({reason})" for i, reason in skipped.items()]
        parts.append(f"{len(skipped)} skipped: {_ids(reasons, limit)}")
    return "; ".join(parts) + "."


def summary_markdown(results: Mapping[str, Mapping], title: str = "Evaluation") -> str:
    """One overview row per benchmark (`score_predictions` results by name), what each accuracy is over,
    then per-category tables."""
    overview = []
    for name, r in results.items():
        g = r.get("grounding") or {}
        overview.append([name, r["expected"], r["count"], len(r["missing"]), len(r["skipped"]), r["accuracy"],
                         r["accuracy_of_scored"], r["format_rate"], r["answered_rate"],
                         g.get("mIoU", float("nan")), g.get("R@0.3", float("nan")),
                         g.get("R@0.5", float("nan")), g.get("R@0.7", float("nan")),
                         r.get("rule", "-"), g.get("rule", "-")])
    parts = [f"# {title}", "",
             markdown_table(["benchmark", "questions", "scored", "missing", "skipped", "accuracy %",
                             "accuracy % of scored", "format %", "answered %", "mIoU", "R@0.3", "R@0.5", "R@0.7",
                             "scoring rule", "grounding rule"],
                            overview),
             "",
             "accuracy counts missing and skipped questions as wrong (correct / all questions, as published "
             "tables do); \"accuracy % of scored\", format and answered are over the scored questions. "
             "\"scoring rule\" is the scorer that read the answers, \"grounding rule\" the mIoU / R@k rule "
             "(docs/eval.md says which reproduces which published table).",
             ""]
    parts += [coverage_line(name, r) for name, r in results.items()]
    with_captions = [(name, r["captions"]) for name, r in results.items() if r.get("captions")]
    if with_captions:
        rows = [[name, int(c["count"]), c["BLEU-1"], c["METEOR"], c["ROUGE-L"]] for name, c in with_captions]
        parts += ["", "## captions (<caption> text vs reference captions)", "",
                  markdown_table(["benchmark", "N", "BLEU-1", "METEOR", "ROUGE-L"], rows)]
    for name, r in results.items():
        types = r.get("per_problem_type", {})
        if len(types) > 1:
            rows = [[t, v["count"], v["score"]] for t, v in types.items()]
            parts += ["", f"## {name}: per problem type (regression: mean relative accuracy under video_r1)", "",
                      markdown_table(["problem type", "N", "score %"], rows)]
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
