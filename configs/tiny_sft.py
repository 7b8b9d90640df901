r"""A tiny random Qwen2.5-VL trained on the CPU: the whole SFT loop in about a minute.

  python -m vtjax.main --config configs/tiny_sft.py --workdir /tmp/tiny_sft

With real records and a tokenizer instead of synthetic batches:

  python -m vtjax.main --config configs/tiny_sft.py:records --workdir /tmp/tiny_sft \
    --config.data.train_files=records.jsonl --config.data.video_roots=videos/ \
    --config.data.tokenizer=tokenizer.json

The tests use this config with their own overrides.
"""

from vtjax.train.config import sft_defaults


def get_config(arg: str = ""):
    c = sft_defaults()
    c.model.preset = "tiny"  # 2 decoder layers of width 64, a 4-block ViT of width 32, 512 ids
    c.model.dtype = "float32"  # CPUs have no fast bf16; exact comparisons in the tests
    c.model.remat_policy = "none"  # nothing worth recomputing at this size
    c.model.attention_impl = "xla"  # the portable path

    c.data.source = "records" if arg == "records" else "synthetic"  # synthetic: random videos and answers
    c.data.nframes = 4  # short clips keep decoding cheap
    c.data.max_pixels = 56 * 56  # 4x4 patches per frame
    c.data.min_pixels = 28 * 28  # let small frames stay small
    c.data.image_min_pixels = 28 * 28  # image records: as small as a frame may be
    c.data.image_max_pixels = 56 * 56  # image records: at most 4x4 patches, like a frame
    c.data.max_length = 1024  # records: vtjax.data.synthetic's reach ~600 ids (the prompts alone ~450)
    c.data.synthetic_examples = 8  # the set a tiny model can memorise
    c.data.synthetic_text = 32  # 16 prompt + 16 answer tokens around the video
    c.data.synthetic_grid = (2, 4, 4)  # 4 frames of 56x56 pixels

    c.train.batch_size = 8  # divisible by up to 8 (fake) devices
    c.train.num_steps = 20  # enough to see the loss fall
    c.train.lr = 3e-3  # tiny models take large steps
    c.train.warmup_steps = 2  # brief warmup
    c.train.loss_chunk = 32  # several chunks per sequence, as on real lengths

    c.checkpoint.every_steps = 10  # exercise saving
    c.checkpoint.keep = 2  # and pruning
    c.log.every_steps = 5  # console + TensorBoard every 5 steps
    c.log.progress_bar = False  # plain logs (CI)
    if arg not in ("", "records"):
        raise ValueError(f"unknown config arg {arg!r}; use '' or 'records'")
    return c
