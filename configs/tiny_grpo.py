r"""A tiny random Qwen2.5-VL under GRPO on the CPU: rollouts, rewards and updates in about a minute.

  python -m vtjax.main --config configs/tiny_grpo.py --workdir /tmp/tiny_grpo

``configs/tiny_grpo.py:records`` reads real records instead (set data.train_files,
data.video_roots and data.tokenizer, or model.init_from, by override). The
synthetic prompts have no answer to check: the tests register a toy reward.
"""

from vtjax.train.grpo_config import grpo_defaults


def get_config(arg: str = ""):
    c = grpo_defaults()
    c.model.preset = "tiny"  # 2 decoder layers of width 64, a 4-block ViT of width 32, 512 ids
    c.model.dtype = "float32"  # CPUs have no fast bf16
    c.model.remat_policy = "none"  # nothing worth recomputing at this size
    c.model.attention_impl = "xla"  # the portable path

    c.data.source = "records" if arg == "records" else "synthetic"  # synthetic: random video prompts
    c.data.nframes = 4  # short clips keep decoding cheap
    c.data.max_pixels = 56 * 56  # 4x4 patches per frame
    c.data.min_pixels = 28 * 28  # let small frames stay small
    c.data.image_min_pixels = 28 * 28  # image records: as small as a frame may be
    c.data.image_max_pixels = 56 * 56  # image records: at most 4x4 patches, like a frame
    c.data.max_length = 512  # the tiny vocabulary's sequences are short
    c.data.synthetic_examples = 4  # distinct prompts
    c.data.synthetic_text = 16  # 8 prompt tokens around the video (the other 8 are cut)
    c.data.synthetic_grid = (2, 4, 4)  # 4 frames of 56x56 pixels

    c.train.batch_size = 2  # prompts per step
    c.train.num_steps = 30  # a short run
    c.train.lr = 3e-3  # tiny models take large steps
    c.train.loss_chunk = 32  # several chunks per sequence
    c.train.micro_batches = 2  # exercise gradient accumulation

    c.rl.group_size = 8  # completions per prompt
    c.rl.max_new_tokens = 8  # short completions
    c.rl.reward_weights = "format=1.0"  # override with a reward that fits the data
    c.rl.beta = 0.04  # keep the KL term in the loop

    c.checkpoint.every_steps = 10  # exercise saving
    c.checkpoint.keep = 2  # and pruning
    c.log.every_steps = 5  # frequent summaries
    c.log.progress_bar = False  # quiet in tests
    return c
