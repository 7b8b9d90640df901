"""The SFT experiment schema: every field, its default and what it means, plus validation.

Experiment files under ``configs/`` start from ``sft_defaults()`` and change
what defines the experiment; ``validate`` checks a finished config against the
devices before anything is compiled, and every error names the field and the
fix. Fields are locked: an override with a typo is an error.
"""

from __future__ import annotations

import difflib
import math
import os

import ml_collections

from vtjax import errors
from vtjax.data.records import parse_video_roots  # data.video_roots' parser (train.data imports it from here)
from vtjax.models.qwen2_5_vl.config import ATTENTION_IMPLS, DTYPES, PRESETS, REMAT_POLICIES, VisionConfig
from vtjax.models.qwen2_5_vl.lora import DECODER_PROJECTIONS, LoraSpec
from vtjax.train.loss import LossWeighting

MODES = ("sft", "grpo", "eval", "generate")
NONFINITE_ACTIONS = ("stop", "skip")
FREEZABLE = ("vision", "merger")


ConfigError = errors.ConfigError  # re-exported: the trainers raise it as config_lib.ConfigError


def sft_defaults() -> ml_collections.ConfigDict:
    """All SFT fields with their defaults (Video-Thinker's SFT on Qwen2.5-VL-7B)."""
    c = ml_collections.ConfigDict()
    c.mode = "sft"  # sft | grpo | eval | generate (the trainer vtjax.main runs)
    c.seed = 0  # random init, shuffling and synthetic data derive from it

    c.model = ml_collections.ConfigDict()
    c.model.preset = "7b"  # architecture when init_from is empty: 3b | 7b | 32b | 72b | tiny
    c.model.init_from = ""  # converted checkpoint dir (python -m vtjax.convert hf-to-orbax); "" = random init
    c.model.dtype = "bfloat16"  # compute dtype of activations and matmuls
    c.model.param_dtype = "float32"  # storage dtype of params and optimizer moments
    c.model.scan_layers = True  # nn.scan over layers: compile time independent of depth
    c.model.remat_policy = "full"  # none | full | dots | dots_no_batch | save_attention_out
    c.model.attention_impl = "auto"  # xla | pallas | cudnn | auto (Pallas on GPU/TPU)

    c.data = ml_collections.ConfigDict()
    c.data.source = "records"  # records (Video-R1 JSON files) | synthetic (random in-memory batches)
    c.data.train_files = ""  # comma-separated JSON / JSONL record files
    c.data.video_roots = ""  # one directory, or "Source=dir,Other=dir,*=fallback" per data_source
    c.data.tokenizer = ""  # tokenizer.json / .model or a dir holding one; "" = the init_from dir
    c.data.system_prompt = ""  # system prompt file; "" = configs/prompts/video_thinker_system.txt
    c.data.question_prompt = ""  # user-turn template file with {question}; "" = the Video-Thinker one
    c.data.type_instructions = ""  # JSON {problem_type: text} appended after the template (Video-R1); "" = none
    c.data.nframes = 0  # frames sampled per video (uniform, rounded to even); 0 = sample at data.fps (Video-R1)
    c.data.fps = 2.0  # frames per second when nframes is 0, then clamped to [min_frames, max_frames]
    c.data.min_frames = 4  # fps mode lower bound (qwen-vl-utils' FPS_MIN_FRAMES)
    c.data.max_frames = 16  # fps mode upper bound (Video-R1's FPS_MAX_FRAMES; upstream 768)
    c.data.max_pixels = 128 * 28 * 28  # per-frame ceiling (qwen-vl-utils' VIDEO_MAX_PIXELS; never below 1.05 * min)
    c.data.min_pixels = 128 * 28 * 28  # per-frame pixel floor (qwen-vl-utils' VIDEO_MIN_PIXELS)
    c.data.image_min_pixels = 4 * 28 * 28  # image records: area floor (qwen-vl-utils' MIN_PIXELS)
    c.data.image_max_pixels = 256 * 28 * 28  # image records: area ceiling (Video-R1's vendored MAX_PIXELS)
    c.data.max_length = 8192  # longer conversations are skipped, never truncated
    c.data.include_prompt_in_loss = False  # also train on prompt text (the released script did)
    c.data.worker_count = 0  # video-decoding processes per host; 0 decodes in the main process
    c.data.length_buckets = ()  # padded text lengths; () = m*2^k, m in 4..7 (vtjax.buckets)
    c.data.patch_buckets = ()  # padded vision rows per micro-batch; () = same series
    c.data.packing = False  # SFT: pack whole examples into rows of data.token_budget (train.batch_size counts rows)
    c.data.token_budget = 8192  # packing: tokens per row (longer examples are skipped); rows never cross it
    c.data.pack_lookahead = 16  # packing: examples drawn beyond what could fill a batch, to choose from
    c.data.max_bad_fraction = 0.05  # stop when more than this share of examples is unusable
    c.data.synthetic_examples = 8  # synthetic source: distinct examples, repeated in a fixed order
    c.data.synthetic_text = 48  # synthetic source: text tokens around the video per example
    c.data.synthetic_grid = (2, 8, 8)  # synthetic source: video grid (t, h, w) in patches

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 16  # global examples per optimizer step
    c.train.micro_batches = 1  # gradient accumulation: the step runs this many slices in a scan
    c.train.num_epochs = 1  # passes over the records (sets the step count when num_steps is 0)
    c.train.num_steps = 0  # optimizer steps; 0 = num_epochs * len(records) // batch_size
    c.train.lr = 1e-5  # peak learning rate
    c.train.warmup_steps = 0  # linear warmup steps; 0 = warmup_ratio * num_steps
    c.train.warmup_ratio = 0.03  # warmup share of the run when warmup_steps is 0
    c.train.end_lr_ratio = 0.0  # cosine decays to lr * end_lr_ratio
    c.train.b1 = 0.9  # AdamW beta1
    c.train.b2 = 0.999  # AdamW beta2
    c.train.eps = 1e-8  # AdamW epsilon
    c.train.weight_decay = 0.0  # decoupled weight decay (the paper states none for SFT)
    c.train.decay_all_params = False  # False: no decay on norms, biases and embeddings
    c.train.max_grad_norm = 1.0  # global-norm clipping; 0 disables
    c.train.freeze = ""  # comma-separated parts kept fixed: vision (patch embed + blocks), merger
    c.train.loss_weighting = "token"  # SFT loss: token (mean over the batch's answer tokens) | example (mean of means)
    c.train.loss_chunk = 512  # tokens per cross-entropy chunk ([B, chunk, vocab] float32 at a time)
    c.train.on_nonfinite = "stop"  # stop: end the run, checkpoints untouched | skip: drop that update
    # Low-rank adapters (docs/training.md "LoRA"): only the adapters train; the base weights stay as loaded.
    c.train.lora = ml_collections.ConfigDict()
    c.train.lora.enabled = False  # True: train LoRA adapters instead of the full model
    c.train.lora.rank = 16  # r, the adapters' inner width
    c.train.lora.alpha = 32.0  # the update is scaled by alpha / rank (alpha / sqrt(rank) with rslora)
    c.train.lora.dropout = 0.0  # dropout on the adapters' input while training
    c.train.lora.targets = DECODER_PROJECTIONS  # regex over module paths ('layers/q_proj', 'visual/layers/qkv')
    c.train.lora.rslora = False  # rank-stabilised scaling
    c.train.lora.base_dtype = ""  # the frozen base's storage dtype: "" = model.param_dtype, or "bfloat16"

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = 1  # pure data parallel axis (replicated params)
    c.mesh.fsdp = -1  # batch + parameter sharding axis; -1 takes the remaining devices
    c.mesh.tensor = 1  # tensor parallel axis (heads, mlp, vocab)

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 500  # save every N steps (and at the end, and on SIGTERM)
    c.checkpoint.keep = 3  # newest checkpoints kept
    c.checkpoint.async_save = True  # write in the background while training continues
    c.checkpoint.resume = True  # continue from the newest checkpoint in workdir when there is one
    c.checkpoint.allow_config_change = False  # resume although batch, data, seed, ... differ from the saved config

    c.log = ml_collections.ConfigDict()
    c.log.every_steps = 10  # console summary and TensorBoard scalars every N steps
    c.log.progress_bar = True  # tqdm bar with loss and tokens/s (process 0)
    c.log.peak_tflops = 0.0  # per-device peak for MFU; 0 = look up the device kind (none on CPU)
    return c


# --- Validation -----------------------------------------------------------------------


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted field name of ``config`` ("train.lr", ...)."""
    keys = []
    for k, v in config.items():
        name = f"{prefix}{k}"
        keys += flat_keys(v, name + ".") if isinstance(v, ml_collections.ConfigDict) else [name]
    return keys


def close_matches(name: str, config: ml_collections.ConfigDict) -> list[str]:
    """The config fields that look like ``name`` (for typo messages), best first."""
    keys = flat_keys(config)
    by_path = difflib.get_close_matches(name, keys, n=5, cutoff=0.6)
    leaves = difflib.get_close_matches(_leaf(name), sorted({_leaf(k) for k in keys}), n=3, cutoff=0.75)
    return list(dict.fromkeys(by_path + [k for k in keys if _leaf(k) in leaves]))[:5]


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def split_list(value: str | tuple | list) -> list[str]:
    """``"a, b"`` or ``("a", "b")`` -> ``["a", "b"]`` (empty items dropped)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(x).strip() for x in items if str(x).strip()]


def mesh_sizes(config, num_devices: int) -> dict[str, int]:
    """Resolved (data, fsdp, tensor) sizes for ``num_devices``; errors name the mesh field."""
    sizes = {a: int(config.mesh[a]) for a in ("data", "fsdp", "tensor")}
    for name, size in sizes.items():
        if size == 0 or size < -1:
            raise ConfigError(f"mesh.{name}={size} must be a positive size or -1 (fill)")
    fill = [k for k, v in sizes.items() if v == -1]
    if len(fill) > 1:
        raise ConfigError(f"only one mesh axis may be -1; mesh.{fill[0]} and mesh.{fill[1]} both are")
    known = math.prod(v for v in sizes.values() if v != -1)
    if fill:
        if num_devices % known:
            fixed = ", ".join(f"mesh.{k}={v}" for k, v in sizes.items() if v != -1)
            raise ConfigError(f"{fixed} (product {known}) do not divide the {num_devices} devices: set "
                              f"mesh.{fill[0]} explicitly or change the other axes")
        sizes[fill[0]] = num_devices // known
    if math.prod(sizes.values()) != num_devices:
        raise ConfigError(f"mesh.data*mesh.fsdp*mesh.tensor = {sizes['data']}*{sizes['fsdp']}*{sizes['tensor']} "
                          f"= {math.prod(sizes.values())} but there are "
                          f"{num_devices} devices; make the product equal the device count (or use -1)")
    return sizes


def validate(config, *, num_devices: int, process_count: int = 1,
             rows: tuple[str, int] | None = None) -> dict[str, int]:
    """Checks ``config`` before anything is compiled; returns the resolved mesh sizes.

    ``rows`` is what one optimizer step splits into micro-batches, as (how the user set it, count);
    default ``("train.batch_size=B", B)``. GRPO passes its prompts times completions.
    """
    if config.mode not in MODES:
        raise ConfigError(f"mode={config.mode!r} must be one of {MODES}")
    t = config.train
    positive = {"train.lr": t.lr, "train.batch_size": t.batch_size, "train.micro_batches": t.micro_batches,
                "train.loss_chunk": t.loss_chunk, "checkpoint.every_steps": config.checkpoint.every_steps,
                "checkpoint.keep": config.checkpoint.keep, "log.every_steps": config.log.every_steps}
    if not isinstance(config.checkpoint.allow_config_change, bool):
        raise ConfigError(f"checkpoint.allow_config_change={config.checkpoint.allow_config_change!r} must be "
                          "True or False")
    for name, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{name}={value} must be positive")
    non_negative = {"train.num_steps": t.num_steps, "train.warmup_steps": t.warmup_steps,
                    "train.weight_decay": t.weight_decay, "train.max_grad_norm": t.max_grad_norm,
                    "train.num_epochs": t.num_epochs, "log.peak_tflops": config.log.peak_tflops}
    for name, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{name}={value} must be >= 0")
    for name in ("warmup_ratio", "end_lr_ratio"):
        if not 0.0 <= t[name] <= 1.0:
            raise ConfigError(f"train.{name}={t[name]} must be in [0, 1]")
    for name in ("b1", "b2"):
        if not 0 <= t[name] < 1:
            raise ConfigError(f"train.{name}={t[name]} must be in [0, 1)")
    if not t.eps > 0:
        raise ConfigError(f"train.eps={t.eps} must be positive")
    if t.on_nonfinite not in NONFINITE_ACTIONS:
        raise ConfigError(f"train.on_nonfinite={t.on_nonfinite!r} must be one of {NONFINITE_ACTIONS}")
    bad = [p for p in split_list(t.freeze) if p not in FREEZABLE]
    if bad:
        raise ConfigError(f"train.freeze={t.freeze!r} has unknown part(s) {bad}; choose from {FREEZABLE}")
    lora_spec(config)

    sizes = mesh_sizes(config, num_devices)
    what, count = rows or (f"train.batch_size={t.batch_size}", t.batch_size)
    check_batch_split(what, count, t.micro_batches, sizes["data"] * sizes["fsdp"], process_count)
    validate_model(config)
    _validate_data(config)
    return sizes


def lora_spec(config) -> LoraSpec | None:
    """The ``train.lora`` block as the model's ``LoraSpec`` (None when off); bad fields raise ConfigError."""
    lo = config.train.lora
    if not lo.enabled:
        return None
    try:
        return LoraSpec(rank=int(lo.rank), alpha=float(lo.alpha), dropout=float(lo.dropout), targets=str(lo.targets),
                        rslora=bool(lo.rslora), base_dtype=str(lo.base_dtype))
    except ValueError as e:
        raise ConfigError(f"train.{e}") from None


def check_batch_split(what: str, rows: int, micro_batches: int, batch_shards: int, process_count: int) -> None:
    """``rows`` (set by the user as ``what``) must split into ``micro_batches`` slices over the data axes."""
    if rows % micro_batches:
        raise ConfigError(f"{what} is not divisible by train.micro_batches={micro_batches}; set "
                          f"train.micro_batches to a divisor of {rows}")
    micro = rows // micro_batches
    if micro % batch_shards:
        raise ConfigError(f"{what} / train.micro_batches={micro_batches} = {micro} rows per micro-batch is not "
                          f"divisible by the data axes mesh.data*mesh.fsdp={batch_shards}; make {what.split('=')[0]} "
                          f"a multiple of {micro_batches * batch_shards}")
    if micro % process_count:
        raise ConfigError(f"{what} / train.micro_batches={micro_batches} = {micro} rows per micro-batch is not "
                          f"divisible by the {process_count} processes")


def validate_model(config) -> None:
    """The ``model`` block: a known preset (when not loading a checkpoint), dtypes, remat and attention choices."""
    m = config.model
    if not m.init_from and not m.get("from_workdir") and str(m.preset).lower() not in PRESETS:
        raise ConfigError(f"model.preset={m.preset!r} is not a preset; choose one of {list(PRESETS)} "
                          "or load a checkpoint with model.init_from")
    for name in ("dtype", "param_dtype"):
        if m[name] not in DTYPES:
            raise ConfigError(f"model.{name}={m[name]!r} must be one of {DTYPES}")
    if m.remat_policy not in REMAT_POLICIES:
        raise ConfigError(f"model.remat_policy={m.remat_policy!r} must be one of {REMAT_POLICIES}")
    if m.attention_impl not in ATTENTION_IMPLS:
        raise ConfigError(f"model.attention_impl={m.attention_impl!r} must be one of {ATTENTION_IMPLS}")
    if m.init_from and not os.path.isdir(m.init_from):
        raise ConfigError(f"model.init_from={m.init_from!r} is not a directory; convert a "
                          "checkpoint with `python -m vtjax.convert hf-to-orbax` or set it to ''")


def _validate_packing(config) -> None:
    d, t = config.data, config.train
    if t.loss_weighting not in [w.value for w in LossWeighting]:
        raise ConfigError(f"train.loss_weighting={t.loss_weighting!r} must be one of "
                          f"{[w.value for w in LossWeighting]}")
    if not d.packing:
        return
    if config.mode != "sft" or d.source != "records":
        raise ConfigError(f"data.packing=True packs SFT records; mode={config.mode!r} with "
                          f"data.source={d.source!r} keeps one example per row (set data.packing=False)")
    if d.token_budget < 64 or d.pack_lookahead < 0:
        raise ConfigError(f"data.token_budget={d.token_budget} must be >= 64 and data.pack_lookahead="
                          f"{d.pack_lookahead} >= 0")
    if not t.num_steps:
        raise ConfigError("data.packing=True: a packed row holds a varying number of examples, so an epoch's step "
                          "count is unknown until the data is read; set train.num_steps")


def _validate_data(config) -> None:
    d = config.data
    if d.source not in ("records", "synthetic"):
        raise ConfigError(f"data.source={d.source!r} must be 'records' or 'synthetic'")
    if not 0.0 <= d.max_bad_fraction <= 1.0:
        raise ConfigError(f"data.max_bad_fraction={d.max_bad_fraction} must be in [0, 1]")
    if d.worker_count < 0:
        raise ConfigError(f"data.worker_count={d.worker_count} must be >= 0 (0 decodes in the main process)")
    for name in ("length_buckets", "patch_buckets"):
        if any(not isinstance(b, int) or b <= 0 for b in d[name]):
            raise ConfigError(f"data.{name}={tuple(d[name])} must hold positive integers, or be () for the defaults")
    _validate_packing(config)
    if d.source == "synthetic":
        _validate_synthetic(d)
        return
    files = split_list(d.train_files)
    if not files:
        raise ConfigError("data.train_files is empty; give the record files (comma-separated), "
                          "or set data.source='synthetic'")
    for path in files:
        if not os.path.isfile(path):
            raise ConfigError(f"data.train_files: {path!r} does not exist")
    roots = parse_video_roots(d.video_roots)
    if not roots:
        raise ConfigError("data.video_roots is empty; give the directory the records' paths are relative to")
    for name, root in roots.items():
        if not os.path.isdir(root):
            raise ConfigError(f"data.video_roots: {name}={root!r} is not a directory")
    tok = d.tokenizer or config.model.init_from
    if not tok:
        raise ConfigError("data.tokenizer is empty and there is no model.init_from to take it from; "
                          "point data.tokenizer at a tokenizer.json or .model file")
    if not os.path.exists(tok):
        raise ConfigError(f"data.tokenizer: {tok!r} does not exist")
    for name in ("system_prompt", "question_prompt", "type_instructions"):
        if d[name] and not os.path.isfile(d[name]):
            raise ConfigError(f"data.{name}: {d[name]!r} does not exist")
    for name in ("max_pixels", "max_length"):
        if d[name] <= 0:
            raise ConfigError(f"data.{name}={d[name]} must be positive")
    if d.nframes < 0:
        raise ConfigError(f"data.nframes={d.nframes} must be >= 0 (0 samples at data.fps)")
    if d.nframes == 0 and not (d.fps > 0 and 2 <= d.min_frames <= d.max_frames):
        raise ConfigError(f"data.fps={d.fps} must be > 0 and 2 <= data.min_frames={d.min_frames} <= "
                          f"data.max_frames={d.max_frames} (or set data.nframes)")
    if not 0 < d.min_pixels <= d.max_pixels:
        raise ConfigError(f"data.min_pixels={d.min_pixels} must be in (0, data.max_pixels={d.max_pixels}]")
    if not 0 < d.image_min_pixels <= d.image_max_pixels:
        raise ConfigError(f"data.image_min_pixels={d.image_min_pixels} must be in "
                          f"(0, data.image_max_pixels={d.image_max_pixels}]")


def _validate_synthetic(d) -> None:
    for name in ("synthetic_examples", "synthetic_text"):
        if d[name] <= 0:
            raise ConfigError(f"data.{name}={d[name]} must be positive")
    grid, merge = tuple(d.synthetic_grid), VisionConfig.spatial_merge_size
    if len(grid) != 3 or any(not isinstance(n, int) or n <= 0 for n in grid):
        raise ConfigError(f"data.synthetic_grid={grid} must be 3 positive integers (t, h, w) in patches, "
                          "e.g. (2, 4, 4)")
    if grid[1] % merge or grid[2] % merge:
        raise ConfigError(f"data.synthetic_grid={grid}: h and w must be multiples of {merge} (the vision "
                          f"merger folds {merge}x{merge} patches into one token)")
