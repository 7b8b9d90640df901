r"""Video-Thinker SFT of Qwen2.5-VL-7B-Instruct (the paper's first stage, on Video-Thinker-10K).

Launch (the same command on every host):

  python -m vtjax.main --config configs/qwen2_5_vl_7b_sft.py --workdir /ckpt/vt7b_sft \
    --config.model.init_from=/ckpt/Qwen2.5-VL-7B-Instruct-vtjax \
    --config.data.train_files=/data/video_thinker_10k.json --config.data.video_roots=/data/videos

Smoke run of the same pipeline with a tiny random model on a laptop:

  python -m vtjax.main --config configs/qwen2_5_vl_7b_sft.py:runlocal --workdir /tmp/vt_local

Only the fields that define this experiment are set here; vtjax/train/config.py
lists every field with its meaning and default.
"""

from vtjax.train.config import sft_defaults


def get_config(arg: str = ""):
    c = sft_defaults()
    c.model.preset = "7b"  # architecture of a random init; init_from's config.json wins when set
    c.model.init_from = ""  # converted Qwen2.5-VL-7B-Instruct (python -m vtjax.convert hf-to-orbax)
    c.model.dtype = "bfloat16"  # matmuls in bf16, norms / softmax / loss in float32
    c.model.remat_policy = "full"  # recompute layers in the backward pass: 4k-token videos fit at fsdp=8

    # Frames: the schema's defaults are Video-R1's (its vendored qwen-vl-utils, which the paper's "16 frames
    # at 128*28*28 pixels" follows): 2 fps, 4..16 frames floored to even, 128*28*28 pixels per frame with
    # the 1.05 floor, so a 5 s clip gives 10 frames and a 480x640 frame 280x364 (vtjax/train/config.py).
    c.data.max_length = 8192  # longer conversations are skipped (about 1k of them are video tokens)
    c.data.worker_count = 8  # video-decoding processes per host
    c.data.include_prompt_in_loss = False  # the paper's Eq. 1: loss on the trace and answer only

    c.train.batch_size = 16  # the paper's global batch
    c.train.num_epochs = 1  # one pass over Video-Thinker-10K
    c.train.lr = 1e-5  # the paper's SFT learning rate
    c.train.warmup_ratio = 0.03  # short linear warmup, then cosine to 0
    c.train.max_grad_norm = 1.0  # clip the global gradient norm
    c.train.loss_chunk = 512  # 512 x 152k float32 logits per example at a time

    c.mesh.fsdp = -1  # shard params, moments and batch over every device
    c.checkpoint.every_steps = 100  # ~6 checkpoints in the 625-step epoch
    c.log.every_steps = 10  # console + TensorBoard every 10 steps

    if arg == "runlocal":  # tiny random model + synthetic batches: the whole loop on a CPU in a minute
        c.model.preset = "tiny"  # ~0.3M-parameter model with the real structure
        c.model.dtype = "float32"  # CPUs have no fast bf16
        c.model.remat_policy = "none"  # nothing to save on a tiny model
        c.data.source = "synthetic"  # random in-memory videos and answers, no files needed
        c.data.worker_count = 0  # nothing to decode
        c.train.batch_size = 8  # divisible by up to 8 (fake) devices
        c.train.num_steps = 20  # a few steps
        c.train.lr = 1e-3  # a tiny model needs larger steps to move in 20 of them
        c.checkpoint.every_steps = 10  # exercise saving
        c.log.every_steps = 5  # and logging
    elif arg:
        raise ValueError(f"unknown config arg {arg!r}; use '' or 'runlocal'")
    return c
