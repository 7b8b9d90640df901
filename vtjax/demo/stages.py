"""The demo's stages as plain functions: data, a random model, SFT / GRPO / eval configs.

Each stage maps the demo config (configs/demo.py) onto the schema of the
component it runs, so the demo is exactly what a user would launch by hand:
``sft_config`` is an ``sft_defaults()`` config, ``grpo_config`` a
``grpo_defaults()`` one, ``eval_config`` an ``eval_defaults()`` one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jax

from vtjax.convert.files import atomic_output_dir
from vtjax.convert.orbax_io import write_params_checkpoint
from vtjax.data import synthetic
from vtjax.data import tokenizer as tok_lib
from vtjax.eval.config import eval_defaults
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, TextConfig, VisionConfig, init_params
from vtjax.train.config import sft_defaults
from vtjax.train.data import match_tokenizer

QUESTION_TEMPLATE = "{question}"  # the user turn is the question and its options, nothing else


def dataset(demo, workdir: str) -> synthetic.SyntheticDataset:
    """The synthetic train/test splits and tokenizer (built once, then reused from the cache)."""
    d = demo.data
    cfg = synthetic.SyntheticConfig(
        seed=demo.seed, num_train=d.num_train, num_test=d.num_test, min_objects=d.min_objects,
        max_objects=d.max_objects, distractors=d.distractors, min_duration_s=d.min_duration_s,
        max_duration_s=d.max_duration_s, size=demo.video.size, object_size=d.object_size, move_prob=d.move_prob,
        colours=d.colours, sequential=d.sequential, option_order=d.option_order,
        question_kinds=tuple(d.question_kinds))
    if d.min_duration_s * cfg.fps < demo.video.nframes:
        raise ValueError(f"data.min_duration_s={d.min_duration_s} at {cfg.fps} fps has fewer frames than "
                         f"video.nframes={demo.video.nframes}; lengthen the videos or sample fewer frames")
    return synthetic.write_dataset(d.cache_dir or os.path.join(workdir, "data"), cfg,
                                   extra_texts=[d.system_prompt, QUESTION_TEMPLATE], workers=d.workers,
                                   progress=demo.log.progress_bar)


def write_prompts(demo, workdir: str) -> tuple[str, str]:
    """The system prompt and question template as files (the training configs point at files)."""
    os.makedirs(workdir, exist_ok=True)
    system, question = os.path.join(workdir, "system_prompt.txt"), os.path.join(workdir, "question_prompt.txt")
    Path(system).write_text(demo.data.system_prompt + "\n", encoding="utf-8")
    Path(question).write_text(QUESTION_TEMPLATE + "\n", encoding="utf-8")
    return system, question


def special_ids(tokenizer: tok_lib.Tokenizer) -> dict[str, int]:
    """The model config's special token fields, set to ``tokenizer``'s ids."""
    ids = {"image_token_id": tok_lib.IMAGE_PAD, "video_token_id": tok_lib.VIDEO_PAD,
           "vision_start_token_id": tok_lib.VISION_START, "vision_end_token_id": tok_lib.VISION_END,
           "eos_token_id": tok_lib.IM_END}
    out = {field: tokenizer.token_to_id(token) for field, token in ids.items()}
    return {**out, "bos_token_id": tokenizer.pad_id, "pad_token_id": tokenizer.pad_id}


def architecture(demo, tokenizer: tok_lib.Tokenizer) -> Qwen25VLConfig:
    """The tiny Qwen2.5-VL of ``demo.model``, its vocabulary and special ids those of ``tokenizer``."""
    m = demo.model
    head_dim = m.hidden // m.heads
    if m.hidden % m.heads or head_dim % 4:
        raise ValueError(f"model.hidden={m.hidden} / model.heads={m.heads} must give a head_dim divisible by 4")
    quarter = head_dim // 8  # mRoPE splits head_dim/2 frequencies over (t, h, w) as 1/4, 3/8, 3/8
    rotary = (quarter, (head_dim // 2 - quarter) // 2, head_dim // 2 - quarter - (head_dim // 2 - quarter) // 2)
    vocab = -(-tokenizer.vocab_size // 64) * 64  # a multiple of 64
    cfg = Qwen25VLConfig(
        vision=VisionConfig(depth=m.vision_depth, hidden_size=m.vision_hidden, intermediate_size=m.vision_intermediate,
                            num_heads=m.vision_heads, fullatt_block_indexes=(m.vision_depth - 1,),
                            out_hidden_size=m.hidden),
        text=TextConfig(vocab_size=vocab, hidden_size=m.hidden, intermediate_size=m.intermediate,
                        num_hidden_layers=m.layers, num_attention_heads=m.heads, num_key_value_heads=m.kv_heads,
                        mrope_section=rotary, max_position_embeddings=4096, tie_word_embeddings=True),
        dtype="float32", param_dtype="float32", **special_ids(tokenizer))
    return match_tokenizer(cfg, tokenizer, adopt=True)  # checks the ids agree with the tokenizer


def random_checkpoint(demo, ds: synthetic.SyntheticDataset, out_dir: str) -> tuple[str, int]:
    """A params checkpoint of the random model (+ its tokenizer): SFT's ``init_from``; (dir, param count)."""
    tokenizer = tok_lib.load_tokenizer(ds.tokenizer_path)
    cfg = architecture(demo, tokenizer)
    params = init_params(cfg, demo.seed)
    count = sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
    if not os.path.isfile(os.path.join(out_dir, "vtjax.json")):
        with atomic_output_dir(out_dir, overwrite=True) as tmp:
            write_params_checkpoint(tmp, cfg, params)
            shutil.copy2(ds.tokenizer_path, tmp / "tokenizer.model")
    return out_dir, count


def _common(c, demo, ds, prompts: tuple[str, str], init_from: str) -> None:
    """Model, data and logging fields shared by the SFT and GRPO configs."""
    c.seed = demo.seed
    c.model.init_from = init_from
    c.model.dtype = "float32"  # CPUs have no fast bf16
    c.model.remat_policy = "none"  # nothing worth recomputing at this size
    c.model.attention_impl = "xla"
    c.data.train_files = ds.train_path
    c.data.video_roots = ds.video_root
    c.data.system_prompt, c.data.question_prompt = prompts
    c.data.nframes = demo.video.nframes
    c.data.max_pixels = demo.video.size ** 2
    c.data.min_pixels = 28 * 28
    c.data.max_length = 1024
    c.data.length_buckets = (128, 160, 192, 224, 256, 320, 384, 512, 1024)  # few shapes, little padding
    c.train.loss_chunk = 128
    c.checkpoint.async_save = False
    c.log.every_steps = demo.log.every_steps
    c.log.progress_bar = demo.log.progress_bar


def sft_config(demo, ds, prompts: tuple[str, str], init_from: str):
    """``sft_defaults()`` for the demo's SFT stage (from the random checkpoint)."""
    c = sft_defaults()
    _common(c, demo, ds, prompts, init_from)
    s = demo.sft
    c.train.batch_size = s.batch_size
    c.train.num_epochs = s.num_epochs
    c.train.lr = s.lr
    c.train.warmup_steps = s.warmup_steps
    c.train.b2 = s.b2
    c.train.freeze = demo.model.freeze
    c.train.end_lr_ratio = 0.1
    c.train.weight_decay = 0.0
    c.checkpoint.every_steps = 1000
    c.checkpoint.keep = 1
    return c


def grpo_config(demo, ds, prompts: tuple[str, str], init_from: str):
    """``grpo_defaults()`` for the demo's GRPO stage (from the exported SFT params)."""
    from vtjax.train.grpo_config import grpo_defaults  # pylint: disable=import-outside-toplevel

    c = grpo_defaults()
    _common(c, demo, ds, prompts, init_from)
    g = demo.grpo
    c.train.batch_size = g.batch_size
    c.train.num_steps = g.num_steps
    c.train.lr = g.lr
    c.train.freeze = demo.model.freeze
    c.rl.group_size = g.group_size
    c.rl.temperature = g.temperature
    c.rl.top_p = g.top_p
    c.rl.beta = g.beta
    c.rl.max_new_tokens = g.max_new_tokens
    c.rl.reward_weights = g.reward_weights
    c.checkpoint.every_steps = 1000
    c.checkpoint.keep = 1
    return c


def eval_config(demo, prompts: tuple[str, str], params_dir: str):
    """``eval_defaults()`` for scoring ``params_dir`` on the test split (greedy)."""
    c = eval_defaults()
    c.seed = demo.seed
    c.model.init_from = params_dir
    c.model.dtype = "float32"
    c.model.attention_impl = "xla"
    c.data.system_prompt, c.data.question_prompt = prompts
    c.data.nframes = demo.video.nframes
    c.data.max_pixels = demo.video.size ** 2
    c.data.min_pixels = 28 * 28
    c.data.max_length = 1024
    c.eval.batch_size = demo.eval.batch_size
    c.eval.max_new_tokens = demo.eval.max_new_tokens
    c.eval.progress_bar = demo.log.progress_bar
    return c
