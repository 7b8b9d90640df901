r"""Ask a model one question about one video on the CPU; prints the <time>/<caption>/<think>/<answer> trace.

  python -m vtjax.main --config configs/tiny_generate.py --workdir /tmp/ask \
    --config.model.init_from=CKPT_DIR --config.generate.video=clip.mp4 \
    --config.generate.question="Which object appears first in the video?" \
    --config.generate.options="A. the red circle|B. the blue square|C. the green triangle|D. the white circle"

CKPT_DIR is a params checkpoint (python -m vtjax.convert hf-to-orbax, or the
demo's workdir/demo/sft_params); --config.model.from_workdir=TRAIN_WORKDIR reads
a training run's newest checkpoint instead. With neither, a random tiny model
answers (give --config.data.tokenizer). For a converted 7B checkpoint use
vtjax.eval.config.generate_defaults() settings: 16 frames at 128*28*28 pixels.
"""

from vtjax.eval.config import generate_defaults


def get_config():
    c = generate_defaults()
    c.model.preset = "tiny"  # the random model's architecture (ignored when params are loaded)
    c.model.dtype = "float32"  # CPUs have no fast bf16
    c.model.attention_impl = "xla"  # the portable path
    c.data.nframes = 8  # frames sampled from the video
    c.data.max_pixels = 112 * 112  # per-frame ceiling (the synthetic clips' size)
    c.data.min_pixels = 28 * 28  # let small frames stay small
    c.generate.max_new_tokens = 256  # the synthetic traces are < 200 tokens
    return c
