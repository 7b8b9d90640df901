"""Evaluation outside the generation loop: answer extraction, grounding, benchmark files, scoring, reports.

Modules:
  answers      extract_answer (tag, else explicit option forms only), choice_letter, ground_truth_letter
  grounding    <time> segment parsing, IoU, one-to-one matching, mIoU / R@θ
  benchmarks   loaders (Video-Holmes, CG-Bench, VRBench, Video-R1 schema) -> Video-R1 dicts
  predictions  PredictionStore: resumable JSONL of outputs by record id
  scoring      score_predictions(records, outputs, skipped=) -> accuracy, coverage, per category, format, grounding
  report       markdown tables and the summary file

See docs/eval.md.
"""
