r"""`make demo`: a tiny Qwen2.5-VL learns to think with synthetic videos on the CPU, SFT then GRPO.

  python -m vtjax.main --config configs/demo.py --workdir workdir/demo

Stages (each resumes when rerun with the same workdir): synthetic videos and
questions (cached under workdir/data) -> a random few-million-parameter
Qwen2.5-VL -> SFT on the ground-truth traces -> evaluation on the held-out
test split -> GRPO from the SFT params -> evaluation again -> table,
workdir/report.md and workdir/curves.png. `configs/demo.py:smoke` shrinks
every size for a seconds-long check of the plumbing (the tests run it).

What changed from the full-size recipe, and why (measurements in
docs/demo.md): the model is ~2000x smaller than 7B; every video lasts 8 s and
gives 8 frames of 112x112 (64 visual tokens); the random ViT stays frozen
(trained from scratch in a few hundred steps its features collapse); SFT uses
AdamW beta2 0.95; the system prompt is one line; learning rates are large
because the model is tiny.
"""

import ml_collections

QUESTION_KINDS = ("first_appear", "last_appear")  # the kinds a ~1M model can learn within the CPU budget


def get_config(arg: str = ""):
    c = ml_collections.ConfigDict()
    c.mode = "demo"  # vtjax.main runs vtjax.demo.run
    c.seed = 0  # data, init, shuffling and sampling all derive from it

    c.data = ml_collections.ConfigDict()
    c.data.num_train = 1200  # training questions (one video each)
    c.data.num_test = 200  # held-out questions, scored after SFT and after GRPO
    c.data.min_objects = 4  # objects per video; 4 of them plus distractors=3 ...
    c.data.max_objects = 4  # ... means every option names an object in the video (no "absent object" cue)
    c.data.distractors = 3  # wrong options naming objects that are in the video
    c.data.min_duration_s = 8  # video length range in seconds (4 fps: 32 frames); one length keeps each
    c.data.max_duration_s = 8  # object's 2 s turn on one temporal patch at one mRoPE time (docs/demo.md)
    c.data.object_size = 0.2  # object half-width as a fraction of the frame side: most of its quadrant
    c.data.move_prob = 0.6  # chance that an object living >= 3 s moves once to another quadrant
    c.data.colours = 4  # palette size: with 4 objects, every video holds red, green, blue and yellow once
    c.data.sequential = True  # objects take turns on screen, one at a time: the order is the whole story
    c.data.option_order = "palette"  # fixed option order (A = red ... D = yellow): answering needs seeing,
    #                                  not looking a name up in the option list
    c.data.question_kinds = QUESTION_KINDS  # which of the 10 kinds are asked (docs/synthetic.md)
    c.data.workers = 2  # processes rendering videos
    c.data.cache_dir = ""  # where datasets are cached; "" = workdir/data
    c.data.system_prompt = ("Answer the question about the video. Reason in <time>, <caption> and <think> "
                            "blocks, then give the option letter in <answer></answer>.")  # short: fewer tokens

    c.video = ml_collections.ConfigDict()
    c.video.nframes = 8  # frames sampled per video -> 4 temporal patches
    c.video.size = 112  # frame side in pixels: 8x8 patches, 16 merged tokens per frame pair

    c.model = ml_collections.ConfigDict()  # a Qwen2.5-VL with the real structure, tiny widths
    c.model.hidden = 128  # decoder width
    c.model.layers = 4  # decoder layers
    c.model.heads = 8  # attention heads (head_dim = hidden / heads); 8 learn to read video faster than 4
    c.model.kv_heads = 4  # grouped-query KV heads
    c.model.intermediate = 384  # decoder MLP width
    c.model.vision_hidden = 64  # ViT width
    c.model.vision_depth = 2  # ViT blocks (the last one attends over whole frames)
    c.model.vision_heads = 2  # ViT heads
    c.model.vision_intermediate = 128  # ViT MLP width
    c.model.freeze = "vision"  # SFT and GRPO keep the random ViT fixed (a random feature extractor; see docs/demo.md)

    c.sft = ml_collections.ConfigDict()
    c.sft.batch_size = 8  # examples per step
    c.sft.num_epochs = 6  # passes over the training questions (900 steps)
    c.sft.lr = 3e-3  # peak learning rate (cosine to 10%)
    c.sft.warmup_steps = 10  # linear warmup
    c.sft.b2 = 0.95  # AdamW beta2 (0.999 is the trainer's default): a short second-moment memory
    #                  got the model off its plateau within the budget (docs/demo.md)

    c.grpo = ml_collections.ConfigDict()
    c.grpo.batch_size = 8  # prompts per step (4 gave so noisy a gradient that accuracy fell)
    c.grpo.group_size = 8  # completions per prompt
    c.grpo.num_steps = 20  # GRPO steps
    c.grpo.lr = 1e-4  # a third of SFT's final rate: the policy should move, not jump
    c.grpo.temperature = 1.0  # rollout temperature
    c.grpo.top_p = 1.0  # no nucleus cut: let every token be explored
    c.grpo.beta = 0.04  # KL weight against the SFT policy (the paper's)
    c.grpo.max_new_tokens = 160  # completion cap (ground-truth traces are < 140 tokens)
    c.grpo.reward_weights = "accuracy=1.0,format=1.0"  # the paper's reward

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 50  # prompts per generate call
    c.eval.max_new_tokens = 160  # answer budget (greedy)

    c.log = ml_collections.ConfigDict()
    c.log.progress_bar = True  # tqdm bars for each stage
    c.log.every_steps = 5  # TensorBoard / metrics.jsonl interval (and points on the curves)

    if arg == "smoke":  # seconds: proves the stages connect, learns nothing
        c.data.num_train, c.data.num_test, c.data.workers = 8, 4, 1
        c.model.hidden, c.model.layers, c.model.intermediate, c.model.heads = 32, 1, 64, 2
        c.model.vision_hidden, c.model.vision_depth, c.model.vision_intermediate = 32, 1, 32
        c.sft.batch_size, c.sft.num_epochs = 8, 1  # multiples of 8: the tests fake 8 devices
        c.grpo.batch_size, c.grpo.group_size, c.grpo.num_steps, c.grpo.max_new_tokens = 2, 4, 1, 8
        c.eval.batch_size, c.eval.max_new_tokens = 4, 8
        c.model.kv_heads = 1
        c.video.nframes, c.video.size = 4, 56
        c.log.progress_bar, c.log.every_steps = False, 1
    elif arg:
        raise ValueError(f"unknown config arg {arg!r}; use '' or 'smoke'")
    return c
