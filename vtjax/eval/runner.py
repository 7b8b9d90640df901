"""``mode=eval``: a model answers a benchmark's questions; predictions, scores and a summary land in workdir.

  python -m vtjax.main --config configs/tiny_eval.py --workdir DIR \\
      --config.model.init_from=CKPT --config.eval.files=test.jsonl --config.eval.video_root=videos/

For each annotation file (name = its file stem):

  load (benchmarks.load_benchmark) -> skip ids already in
  DIR/eval/predictions/<name>.jsonl (a rerun resumes) -> eval pipeline
  (video decode, chat prompt, bucketed batches) -> compiled sampler ->
  append each answer (the raw output) to the predictions file ->
  score_predictions under each of ``eval.scoring_rules`` ->
  DIR/eval/scores/<name>.json (the first rule) and
  DIR/eval/scores/<name>.<rule>.json (the others); then DIR/eval/summary.md
  over all files, one row per file and rule. A rerun with other rules
  re-scores the stored outputs without generating again.

Every process runs every batch (params are sharded over the mesh, so the
compiled sampler is one collective program); process 0 writes the files.
Questions the pipeline cannot use (an unreadable video, a prompt over
``data.max_length``; within ``data.max_bad_fraction``) are skipped: not
scored, listed with the reason under ``skipped`` in the scores file and the
summary, and tried again by a rerun.
"""

from __future__ import annotations

import json
import logging
import os

import jax

from vtjax.data import pipeline
from vtjax.eval import benchmarks, inference, report, scoring
from vtjax.eval import config as eval_config
from vtjax.text.grounding import GroundingRule
from vtjax.eval.predictions import PredictionStore
from vtjax.eval.rules import ScoringRule

log = logging.getLogger("vtjax.eval")


def decoding_of(config) -> inference.Decoding:
    e = config.eval
    return inference.Decoding(max_new_tokens=e.max_new_tokens, temperature=e.temperature, top_p=e.top_p,
                              top_k=e.top_k, seed=config.seed)


def pipeline_config(config, batch_size: int) -> pipeline.PipelineConfig:
    """Eval batching from ``config.data`` (buckets, workers, bad-video budget)."""
    d = config.data
    return pipeline.PipelineConfig(batch_size=batch_size, worker_count=d.worker_count,
                                   length_buckets=tuple(d.length_buckets) or None,
                                   patch_buckets=tuple(d.patch_buckets) or None,
                                   max_bad_fraction=d.max_bad_fraction)


_UNKNOWN_SKIP = "unusable; the reason is in the log (the pipeline keeps the last 20)"


def skip_reasons(ids: list[str], recent_skips: list[str]) -> dict[str, str]:
    """{id: "path: reason"} for skipped ``ids``, read from the pipeline's ``"id (path): reason"`` messages."""
    out = {}
    for uid in ids:
        prefix = f"{uid} ("
        found = [m[len(prefix):] for m in recent_skips if m.startswith(prefix)]
        out[uid] = found[-1].replace("): ", ": ", 1) if found else _UNKNOWN_SKIP
    return out


def predict(model: inference.InferenceModel, records: list, store: PredictionStore, decoding: inference.Decoding,
            pipe_cfg: pipeline.PipelineConfig, *, max_length: int = 16384, progress: bool = True,
            desc: str = "eval") -> tuple[int, dict[str, str]]:
    """Generates answers for the records without a stored prediction.

    Returns (how many were added, {id: reason} of the records the pipeline skipped).
    """
    pending = store.pending(records)
    if not pending:
        return 0, {}
    ds = pipeline.eval_pipeline(pending, model.tokenizer, model.prompts, pipe_cfg, video=model.video, image=model.image,
                                max_length=max_length, process_index=0, process_count=1)
    writer = jax.process_index() == 0
    bar = None
    if progress and writer:
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel

        bar = tqdm(total=len(pending), desc=desc, unit="question", dynamic_ncols=True)
    added, answered = 0, set()
    it = iter(ds)
    for batch in it:
        texts = inference.generate_texts(model, batch, decoding)
        for uid, text, valid in zip(batch["record_id"], texts, batch["example_mask"], strict=True):
            if valid:
                answered.add(str(uid))
                if writer:
                    added += store.add(uid, text)
        if bar is not None:
            bar.update(int(batch["example_mask"].sum()))
    if bar is not None:
        bar.close()
    unanswered = [r.uid for r in pending if r.uid not in answered]
    return added, skip_reasons(unanswered, it.stats["recent_skips"])


def evaluate_items(model: inference.InferenceModel, items: list[dict], video_root: str, predictions_path: str,
                   decoding: inference.Decoding, pipe_cfg: pipeline.PipelineConfig, *, max_length: int = 16384,
                   progress: bool = True, desc: str = "eval", rule: ScoringRule | str = ScoringRule.VIDEO_R1,
                   grounding_rule: GroundingRule | str = GroundingRule.MAX_IOU) -> dict:
    """Predicts (resuming from ``predictions_path``) and scores ``items`` (loader dicts) by ``rule``."""
    store = PredictionStore(predictions_path)
    records = benchmarks.to_records(items, video_root)
    added, skipped = predict(model, records, store, decoding, pipe_cfg, max_length=max_length, progress=progress,
                             desc=desc)
    log.info("%s: %d new predictions, %d stored in %s, %d skipped", desc, added, len(store), predictions_path,
             len(skipped))
    return scoring.score_predictions(items, store.outputs(), allow_missing=True, skipped=skipped, rule=rule,
                                     grounding_rule=grounding_rule)


def without_items(metrics: dict) -> dict:
    """The metrics without the per-record list (for logs and return values)."""
    return {k: v for k, v in metrics.items() if k != "items"}


def run(config, workdir: str) -> dict:
    """Evaluates ``config`` (an ``eval_defaults`` ConfigDict); returns {name: metrics without items}."""
    files = eval_config.validate_eval(config)
    scoring_rules, grounding_rule = eval_config.scoring_rules(config), eval_config.grounding_rule(config)
    e = config.eval
    out = os.path.join(workdir, e.output_dir)
    model = inference.load_model(config)
    log.info("evaluating %s on %d file(s)", model.source, len(files))
    results = {}
    for path in files:
        name = os.path.splitext(os.path.basename(path))[0]
        items = benchmarks.load_benchmark(e.benchmark, path)
        items = items[: e.limit] if e.limit else items
        preds_path = os.path.join(out, "predictions", f"{name}.jsonl")
        metrics = evaluate_items(model, items, e.video_root, preds_path, decoding_of(config),
                                 pipeline_config(config, e.batch_size), max_length=config.data.max_length,
                                 progress=e.progress_bar, desc=name, rule=scoring_rules[0],
                                 grounding_rule=grounding_rule)
        by_rule = {scoring_rules[0]: metrics}
        outputs = PredictionStore(preds_path).outputs() if len(scoring_rules) > 1 else {}
        for rule in scoring_rules[1:]:  # the stored raw outputs, read by the other rules
            by_rule[rule] = scoring.score_predictions(items, outputs, allow_missing=True, skipped=metrics["skipped"],
                                                      rule=rule, grounding_rule=grounding_rule)
        for i, (rule, m) in enumerate(by_rule.items()):
            key, stem = (name, name) if i == 0 else (f"{name} [{rule.value}]", f"{name}.{rule.value}")
            if jax.process_index() == 0:
                os.makedirs(os.path.join(out, "scores"), exist_ok=True)
                with open(os.path.join(out, "scores", f"{stem}.json"), "w", encoding="utf-8") as f:
                    json.dump({"source": model.source, **m}, f, indent=1)
            results[key] = without_items(m)
            log.info("%s (%s rule): accuracy %.2f%%, format %.2f%% over %d of %d questions (%d missing, %d skipped)",
                     name, rule.value, m["accuracy"], m["format_rate"], m["count"], m["expected"],
                     len(m["missing"]), len(m["skipped"]))
    if jax.process_index() == 0:
        text = report.write_summary(os.path.join(out, "summary.md"), results, title=f"Evaluation of {model.source}")
        print(text)
    return results
