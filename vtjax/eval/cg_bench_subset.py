"""CG-Bench-Reasoning, as we read it: the questions whose `sub_category` ends in "Cognition".

CG-Bench's `sub_category` has 12 values: six "... Perception", five
"... Cognition" and "Hallucination" (REFERENCE.md §4); the Cognition ones
are 720 of the 3,000 questions in `cgbench_mini.json`. Video-Thinker does
not publish its subset, so this is our best reading, not a released list.

  items = benchmarks.load_cg_bench(path, keep=cg_bench_subset.is_reasoning)
"""

from __future__ import annotations

from collections.abc import Mapping


def is_reasoning(item: Mapping) -> bool:
    """Whether a raw CG-Bench item is in the reasoning subset (a "... Cognition" sub-category)."""
    return str(item.get("sub_category", "")).strip().endswith("Cognition")
