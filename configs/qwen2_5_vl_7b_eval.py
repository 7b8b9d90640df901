r"""Evaluate a Video-Thinker-7B model on a benchmark file, sampled as Video-R1's evaluation samples.

  python -m vtjax.main --config configs/qwen2_5_vl_7b_eval.py --workdir /ckpt/vt7b_eval \
    --config.model.init_from=/ckpt/Video-Thinker-7B-vtjax \
    --config.eval.benchmark=video_holmes --config.eval.files=/data/Video-Holmes/test_Video-Holmes.json \
    --config.eval.video_root=/data/Video-Holmes/videos

For the paper's exact prompts put App. D.1's text into two files and add
``--config.data.system_prompt=FILE --config.data.question_prompt=FILE``
(configs/prompts/README.md). vtjax/eval/config.py lists every field.
"""

from vtjax.eval.config import eval_defaults


def get_config():
    c = eval_defaults()
    c.model.preset = "7b"  # architecture of a random init; init_from's config.json wins when set
    c.model.dtype = "bfloat16"  # matmuls in bf16, norms / softmax in float32

    # Frames: the schema's defaults are Video-R1's (its vendored qwen-vl-utils, which the paper's "16 frames
    # at 128*28*28 pixels" follows): 2 fps, 4..16 frames floored to even, 128*28*28 pixels per frame with
    # the 1.05 floor, so a 5 s clip gives 10 frames and a 480x640 frame 280x364 (vtjax/train/config.py).
    c.data.max_length = 16384  # Video-R1's evaluation allows 16k-token prompts
    c.data.worker_count = 8  # video-decoding processes

    c.eval.max_new_tokens = 1024  # Video-R1's evaluation budget
    c.eval.temperature = 0.0  # greedy (Video-R1's 0.1 with top_p 0.001 keeps only the top token)
    return c
