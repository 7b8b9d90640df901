"""Schemas of the inference modes: ``mode=eval`` (score a benchmark) and ``mode=generate`` (one question).

Both share the model / data / mesh fields of the training schema
(``vtjax.train.config.sft_defaults``, where each is documented) plus
``model.from_workdir``, and add their own section. ``validate_eval`` /
``validate_generate`` check a finished config before anything loads.
"""

from __future__ import annotations

import os

import ml_collections

from vtjax.eval.benchmarks import LOADERS
from vtjax.text.grounding import GroundingRule
from vtjax.eval.rules import ScoringRule, resolve_rules
from vtjax.train.config import ConfigError, sft_defaults, split_list

# Data fields that matter when answering (the rest of sft_defaults().data is about training batches).
_DATA_FIELDS = ("tokenizer", "system_prompt", "question_prompt", "type_instructions", "nframes", "fps", "min_frames", "max_frames",
                "max_pixels", "min_pixels", "image_min_pixels", "image_max_pixels",
                "max_length", "worker_count", "length_buckets", "patch_buckets", "max_bad_fraction")


def _inference_base(mode: str) -> ml_collections.ConfigDict:
    base = sft_defaults()
    c = ml_collections.ConfigDict()
    c.mode = mode  # eval | generate
    c.seed = 0  # sampling seed (temperature > 0) and the random-init baseline's params
    c.model = base.model  # fields as in sft_defaults(); model.preset only for the random baseline
    c.model.from_workdir = ""  # a training workdir: load its newest checkpoint's params (wins over init_from)
    c.model.scan_layers = True  # (ignored when loading: a checkpoint keeps its own layout)
    c.data = ml_collections.ConfigDict({k: base.data[k] for k in _DATA_FIELDS})  # as in sft_defaults()
    c.mesh = base.mesh  # params sharded over this mesh while generating (as in training)
    return c


def eval_defaults() -> ml_collections.ConfigDict:
    """All ``mode=eval`` fields with their defaults (Video-Thinker's evaluation settings)."""
    c = _inference_base("eval")
    c.eval = ml_collections.ConfigDict()
    c.eval.benchmark = "video_r1"  # format: video_r1 (Video-Thinker, synthetic), video_holmes, cg_bench, vrbench
    c.eval.files = ""  # comma-separated annotation files of that format, each scored on its own
    c.eval.video_root = ""  # directory the annotations' video paths are relative to
    c.eval.limit = 0  # evaluate only the first N records of each file; 0 = all
    c.eval.batch_size = 8  # prompts per compiled generate call
    c.eval.max_new_tokens = 1024  # generation budget per answer (REFERENCE.md §1)
    c.eval.temperature = 0.0  # 0 = greedy; the paper's 0.1 with top_p 0.001 keeps only the top token, i.e. greedy
    c.eval.top_p = 1.0  # nucleus filter; 1 = off
    c.eval.top_k = 0  # top-k filter; 0 = off
    # Comma-separated scoring rules (docs/eval.md): video_r1 (Video-R1's eval_bench.py, the stack the paper's
    # decoding settings come from), video_holmes, cg_bench, vrbench (each benchmark's released scorer), vtjax
    # (our lenient reader), or 'official' (this benchmark's own). The first is the headline (scores/<name>.json);
    # each other one re-scores the same stored outputs into scores/<name>.<rule>.json and a summary row.
    c.eval.scoring_rules = "video_r1,official"
    c.eval.grounding_rule = "max_iou"  # <time> vs clue segments: max_iou (paper App. C.3), union (CG-Bench), one_to_one
    c.eval.output_dir = "eval"  # under the workdir: predictions/<name>.jsonl, scores/<name>.json, summary.md
    c.eval.progress_bar = True  # tqdm bar over records (process 0)
    return c


def generate_defaults() -> ml_collections.ConfigDict:
    """All ``mode=generate`` fields: one video and one question in, the reasoning trace and answer out."""
    c = _inference_base("generate")
    c.generate = ml_collections.ConfigDict()
    c.generate.video = ""  # path of the video file to ask about
    c.generate.question = ""  # the question text
    c.generate.options = ""  # options separated by '|', e.g. "A. red|B. blue"; "" = an open question
    c.generate.max_new_tokens = 1024  # generation budget
    c.generate.temperature = 0.0  # 0 = greedy
    c.generate.top_p = 1.0  # nucleus filter; 1 = off
    c.generate.top_k = 0  # top-k filter; 0 = off
    c.generate.num_samples = 1  # answers to sample (temperature > 0 makes them differ)
    return c


def _check_model(config) -> None:
    m = config.model
    if m.from_workdir and not os.path.isdir(os.path.join(m.from_workdir, "checkpoints")):
        raise ConfigError(f"model.from_workdir={m.from_workdir!r} has no checkpoints/ directory; give the "
                          "--workdir of a training run, or use model.init_from for a params checkpoint")
    if not m.from_workdir and m.init_from and not os.path.isdir(m.init_from):
        raise ConfigError(f"model.init_from={m.init_from!r} is not a directory")


def _check_sampling(section: str, s) -> None:
    if s.max_new_tokens < 1:
        raise ConfigError(f"{section}.max_new_tokens={s.max_new_tokens} must be >= 1")
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.top_k < 0:
        raise ConfigError(f"{section}: temperature={s.temperature} must be >= 0, top_p={s.top_p} in (0, 1], "
                          f"top_k={s.top_k} >= 0")


def validate_eval(config) -> list[str]:
    """Checks an eval config; returns its annotation files."""
    e = config.eval
    if e.benchmark not in LOADERS:
        raise ConfigError(f"eval.benchmark={e.benchmark!r} must be one of {sorted(LOADERS)}")
    files = split_list(e.files)
    if not files:
        raise ConfigError("eval.files is empty; give the benchmark's annotation file(s)")
    for path in files:
        if not os.path.isfile(path):
            raise ConfigError(f"eval.files: {path!r} does not exist")
    stems = [os.path.splitext(os.path.basename(p))[0] for p in files]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"eval.files: file names {stems} must differ (each names its predictions file)")
    if not os.path.isdir(e.video_root):
        raise ConfigError(f"eval.video_root={e.video_root!r} is not a directory")
    scoring_rules(config)
    grounding_rule(config)
    if e.batch_size < 1 or e.limit < 0:
        raise ConfigError(f"eval.batch_size={e.batch_size} must be >= 1 and eval.limit={e.limit} >= 0")
    _check_sampling("eval", e)
    _check_model(config)
    return files


def scoring_rules(config) -> list[ScoringRule]:
    """``eval.scoring_rules`` resolved for ``eval.benchmark`` (ConfigError naming the field when invalid)."""
    return resolve_rules(split_list(config.eval.scoring_rules), config.eval.benchmark)


def grounding_rule(config) -> GroundingRule:
    try:
        return GroundingRule(config.eval.grounding_rule)
    except ValueError:
        raise ConfigError(f"eval.grounding_rule={config.eval.grounding_rule!r} must be one of "
                          f"{[r.value for r in GroundingRule]}") from None


def validate_generate(config) -> None:
    g = config.generate
    if not os.path.isfile(g.video):
        raise ConfigError(f"generate.video={g.video!r} is not a file; give the video to ask about")
    if not g.question.strip():
        raise ConfigError("generate.question is empty; give the question to ask")
    if g.num_samples < 1:
        raise ConfigError(f"generate.num_samples={g.num_samples} must be >= 1")
    _check_sampling("generate", g)
    _check_model(config)
