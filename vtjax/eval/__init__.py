"""Evaluation outside the generation loop: answer extraction, grounding, benchmark files, scoring, reports.

Modules:
  answers      extract_answer (tag, else explicit option forms only), choice_letter, ground_truth_letter
  rules        ScoringRule (video_r1, video_holmes, cg_bench, vrbench, vtjax): how an output is read and scored
  video_r1_eval / official   Video-R1's eval rule with MRA / the three benchmarks' released scorers
  grounding    <time> segment parsing, IoU, GroundingRule (max_iou, union, one_to_one), mIoU / R@θ
  captions     BLEU@1, METEOR, ROUGE-L of <caption> text
  cg_bench_subset  the CG-Bench reasoning (Cognition) filter
  benchmarks   loaders (Video-Holmes, CG-Bench, VRBench, Video-R1 schema) -> Video-R1 dicts
  predictions  PredictionStore: resumable JSONL of outputs by record id
  scoring      score_predictions(records, outputs, skipped=, rule=) -> accuracy, coverage, per category, format,
               grounding, captions
  report       markdown tables and the summary file

See docs/eval.md.
"""
