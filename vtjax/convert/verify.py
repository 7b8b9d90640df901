"""Checks converted params against transformers on a small random multimodal input (torch, CPU)."""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from vtjax import errors
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, forward

REL_TOL = 1e-4  # max |logit diff| allowed, relative to max(1, max |logit|): float32 rounding


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    max_abs_diff: float  # max |ours - theirs| over all positions
    max_abs_logit: float  # scale of the reference logits
    kl: float  # mean KL(theirs || ours) per position, nats
    top1_agreement: float  # fraction of positions with the same argmax
    ok: bool  # max_abs_diff <= REL_TOL * max(1, max_abs_logit)

    def summary(self) -> str:
        verdict = "OK" if self.ok else "MISMATCH"
        return (f"verify: {verdict} max|logit diff|={self.max_abs_diff:.3g} (logit scale {self.max_abs_logit:.3g}), "
                f"KL={self.kl:.3g}, top-1 agreement={self.top1_agreement:.4f}")


def verify_against_transformers(config: Qwen25VLConfig, params, hf_dir: str | os.PathLike,
                                seed: int = 0, peft_adapter: str | os.PathLike | None = None) -> VerifyReport:
    """Runs the HF model in ``hf_dir`` and vtjax ``params`` on the same image + video prompt.

    Params stored in a lower precision are compared against the torch model with
    its weights rounded to that precision, so the check isolates the conversion.
    ``peft_adapter``: a PEFT LoRA directory loaded onto the HF model (``peft.PeftModel``) first.
    """
    try:
        import torch
        import transformers  # noqa: F401  (checked here so the error names both packages)
    except ImportError as e:  # pragma: no cover - depends on the install
        raise errors.ConversionError("--verify needs torch and transformers==4.51.3 (pip install 'vtjax[dev]')") from e
    model = _load_torch_model(hf_dir)
    if peft_adapter is not None:
        try:
            from peft import PeftModel
        except ImportError as e:  # pragma: no cover - depends on the install
            raise errors.ConversionError("--verify of a PEFT adapter needs peft (pip install 'vtjax[dev]')") from e
        model = PeftModel.from_pretrained(model, str(peft_adapter)).eval()
    stored = jax.numpy.dtype(config.param_dtype)
    if stored != jax.numpy.float32:
        torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[stored.name]
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch_dtype).float())
    f32_config = config.replace(dtype="float32", param_dtype="float32")
    f32_params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), params)
    inputs = random_multimodal_inputs(config, seed)
    ours = forward(f32_config, f32_params, **inputs)
    with torch.no_grad():
        theirs = model(**{k: torch.as_tensor(v) for k, v in inputs.items()}).logits.numpy()
    return compare_logits(ours[0], theirs[0])


def _load_torch_model(hf_dir):
    """The transformers model of ``hf_dir`` in float32.

    transformers 4.51.3 cannot read the newer ``model.language_model.*`` names, so
    such checkpoints are loaded through their legacy names here.
    """
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from vtjax.convert.mapping import canonical_hf_name
    from vtjax.convert.safetensors_io import CheckpointReader

    reader = CheckpointReader(hf_dir)
    if all(canonical_hf_name(n) == n for n in reader.names()):
        return Qwen2_5_VLForConditionalGeneration.from_pretrained(
            hf_dir, torch_dtype=torch.float32, attn_implementation="eager").eval()
    hf_config = Qwen2_5_VLConfig.from_pretrained(hf_dir)
    hf_config._attn_implementation = "eager"
    model = Qwen2_5_VLForConditionalGeneration(hf_config).float().eval()
    state = {canonical_hf_name(n): torch.from_numpy(np.array(reader.read(n), np.float32))
             for n in reader.names()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and hf_config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"torch model of {hf_dir}: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


def compare_logits(ours: np.ndarray, theirs: np.ndarray) -> VerifyReport:
    """Compares [L, vocab] logits."""
    diff = float(np.abs(ours - theirs).max())
    scale = float(np.abs(theirs).max())
    log_p = theirs - _logsumexp(theirs)
    log_q = ours - _logsumexp(ours)
    kl = float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)))
    top1 = float(np.mean(ours.argmax(-1) == theirs.argmax(-1)))
    return VerifyReport(diff, scale, kl, top1, diff <= REL_TOL * max(1.0, scale))


def random_multimodal_inputs(config: Qwen25VLConfig, seed: int) -> dict:
    """One row: text, an image (8x8 patches), text, a 4-frame video (2x8x8 patches), text."""
    rng = np.random.default_rng(seed)
    special = {config.image_token_id, config.video_token_id, config.vision_start_token_id,
               config.vision_end_token_id}
    ordinary = np.array([t for t in range(min(config.text.vocab_size, 4096)) if t not in special])
    m = config.vision.spatial_merge_size
    image, video = (1, 4 * m, 4 * m), (2, 4 * m, 4 * m)

    def run(token, grid):
        count = int(np.prod(grid)) // config.vision.merge_unit
        return [config.vision_start_token_id] + [token] * count + [config.vision_end_token_id]

    text = lambda n: rng.choice(ordinary, n).tolist()  # noqa: E731
    ids = text(5) + run(config.image_token_id, image) + text(4) + run(config.video_token_id, video) + text(6)
    pixels = lambda g: rng.standard_normal((int(np.prod(g)), config.vision.patch_dim)).astype(np.float32)  # noqa: E731
    return dict(input_ids=np.array([ids]), pixel_values=pixels(image), image_grid_thw=np.array([image]),
                pixel_values_videos=pixels(video), video_grid_thw=np.array([video]),
                second_per_grid_ts=np.array([1.0], np.float32))


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(-1, keepdims=True)
    return top + np.log(np.exp(x - top).sum(-1, keepdims=True))
