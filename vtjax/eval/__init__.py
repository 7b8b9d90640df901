"""Evaluation outside the generation loop: benchmark files, scoring rules, reports.

The text rules it scores with (answer extraction, `<time>` grounding, WER /
ROUGE) live in `vtjax.text`, shared with the rewards.

Modules:
  rules        ScoringRule (video_r1, video_holmes, cg_bench, vrbench, vtjax): how an output is read and scored
  video_r1_eval / official   Video-R1's eval rule with MRA / the three benchmarks' released scorers
  captions     BLEU@1, METEOR, ROUGE-L of <caption> text
  cg_bench_subset  the CG-Bench reasoning (Cognition) filter
  benchmarks   loaders (Video-Holmes, CG-Bench, VRBench, Video-R1 schema) -> Video-R1 dicts
  predictions  PredictionStore: resumable JSONL of outputs by record id
  scoring      score_predictions(records, outputs, skipped=, rule=) -> accuracy, coverage, per category, format,
               grounding, captions
  report       markdown tables and the summary file

See docs/eval.md.
"""
