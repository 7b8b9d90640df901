r"""Evaluate a model on a benchmark file on the CPU: the tiny random model by default (a chance baseline).

  python -m vtjax.main --config configs/tiny_eval.py --workdir /tmp/tiny_eval \
    --config.eval.files=test.jsonl --config.eval.video_root=videos/ --config.data.tokenizer=tokenizer.model

Point it at trained params with --config.model.init_from=CKPT_DIR (a params
checkpoint) or --config.model.from_workdir=TRAIN_WORKDIR (a run's newest
checkpoint). A rerun skips the questions already in
workdir/eval/predictions/<file stem>.jsonl. Full-size evaluation (16 frames at
128*28*28 pixels, 1024 new tokens) is vtjax.eval.config.eval_defaults().
"""

from vtjax.eval.config import eval_defaults


def get_config():
    c = eval_defaults()
    c.model.preset = "tiny"  # the random baseline's architecture (ignored when params are loaded)
    c.model.dtype = "float32"  # CPUs have no fast bf16
    c.model.attention_impl = "xla"  # the portable path
    c.data.nframes = 8  # frames per video (the synthetic clips are >= 4 s at 4 fps)
    c.data.max_pixels = 112 * 112  # the synthetic frames' size: 8x8 patches, no resizing
    c.data.min_pixels = 28 * 28  # let small frames stay small
    c.data.max_length = 2048  # prompt tokens at most
    c.eval.benchmark = "video_r1"  # the synthetic test split is in the Video-Thinker schema
    c.eval.scoring_rules = "video_r1,vtjax"  # Video-R1's exact reader, then our lenient one (a second summary row)
    c.eval.batch_size = 8  # prompts per generate call
    c.eval.max_new_tokens = 256  # the synthetic traces are < 200 tokens
    c.eval.progress_bar = False  # plain logs (CI)
    return c
