r"""Video-Thinker GRPO of Qwen2.5-VL-7B (the paper's second stage, started from the SFT model).

Launch the same command on every host of a pod slice or GPU cluster (docs/training.md, "GRPO on pods
and clusters"), or on one multi-device host:

  python -m vtjax.main --config configs/qwen2_5_vl_7b_grpo.py --workdir /ckpt/vt7b_grpo \
    --config.model.init_from=/ckpt/vt7b_sft_params \
    --config.data.train_files=/data/video_thinker_10k.json --config.data.video_roots=/data/videos

``init_from`` is a params checkpoint: export the SFT run's last checkpoint with
``vtjax.train.export.export_params`` (or convert a Hub model with
``python -m vtjax.convert hf-to-orbax``). Smoke run with a tiny random model:

  python -m vtjax.main --config configs/qwen2_5_vl_7b_grpo.py:runlocal --workdir /tmp/vt_grpo_local

Values stated in the paper: beta 0.04, lr 5e-6, weight decay 0.01, max grad norm
5, batch 8, 2500 steps, 16 frames at 128*28*28 pixels. Not stated, Video-R1's
defaults: G=8, temperature 1.0, top_p 0.95, completions of at most 768 tokens.
vtjax/train/grpo_config.py lists every field.
"""

from vtjax.train.grpo_config import grpo_defaults


def get_config(arg: str = ""):
    c = grpo_defaults()
    c.model.preset = "7b"  # architecture of a random init; init_from's config.json wins when set
    c.model.init_from = ""  # the SFT model as a params checkpoint
    c.model.dtype = "bfloat16"  # matmuls in bf16, norms / softmax / loss in float32
    c.model.remat_policy = "full"  # recompute layers in the backward pass

    # Frames: the schema's defaults are Video-R1's (its vendored qwen-vl-utils, which the paper's "16 frames
    # at 128*28*28 pixels" follows): 2 fps, 4..16 frames floored to even, 128*28*28 pixels per frame with
    # the 1.05 floor, so a 5 s clip gives 10 frames and a 480x640 frame 280x364 (vtjax/train/config.py).
    c.data.max_length = 16384  # Video-R1's max prompt length
    c.data.worker_count = 8  # video-decoding processes per host

    c.train.batch_size = 8  # prompts per step (x group_size completions)
    c.train.micro_batches = 8  # 64 completions in 8 slices of 8
    c.train.num_steps = 2500  # the released checkpoint's step
    c.train.lr = 5e-6  # 1e-5 collapsed in the paper's ablation
    c.train.weight_decay = 0.01  # as stated in the paper
    c.train.max_grad_norm = 5.0  # as stated in the paper

    c.rl.group_size = 8  # Video-R1 default
    c.rl.max_new_tokens = 768  # Video-R1 default completion cap
    c.rl.temperature = 1.0  # Video-R1 default
    c.rl.top_p = 0.95  # Video-R1 default
    c.rl.beta = 0.04  # the paper's KL weight
    c.rl.reward_weights = "accuracy=1.0,format=1.0"  # outcome + format rewards, as in the paper
    c.rl.reward_rules = "video_r1"  # accuracy scored as Video-R1's released reward (the stack the paper follows)
    # Video-R1's trainer options, left off: the paper names only accuracy + format rewards. Video-R1's own
    # video GRPO script turns both on (--temporal, --len_control); to match it set
    # rl.temporal_contrast=True (+0.3 to correct answers when ordered accuracy >= 0.8 x shuffled-frame
    # accuracy; G // 2 = 4 extra rollouts per prompt) and rl.length_bonus=0.2 (320..512 tokens). docs/rl.md.
    c.rl.temporal_contrast = False  # T-GRPO contrast rollout on temporally shuffled frames
    c.rl.length_bonus = 0.0  # bonus for correct completions of rl.length_bonus_range tokens

    c.checkpoint.every_steps = 100  # rollouts are costly: save often

    if arg == "runlocal":  # the same pipeline, tiny and random, on a laptop CPU
        c.model.preset = "tiny"
        c.model.dtype = "float32"
        c.model.remat_policy = "none"
        c.data.source = "synthetic"
        c.data.synthetic_examples = 4
        c.data.synthetic_text = 16
        c.data.synthetic_grid = (2, 4, 4)
        c.train.batch_size = 2
        c.train.micro_batches = 2
        c.train.num_steps = 3
        c.rl.group_size = 4
        c.rl.max_new_tokens = 8
        c.rl.reward_weights = "format=1.0"  # synthetic prompts have no answer to check
        c.checkpoint.every_steps = 2
    return c
