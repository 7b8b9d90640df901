"""A model ready to answer: params from a checkpoint, its tokenizer and prompts, batches -> texts.

Shared by ``mode=eval``, ``mode=generate``, the demo and the notebooks. Params
come from, in order of precedence:

- ``model.from_workdir``: a training workdir; its newest checkpoint's params
  (``vtjax.train.export``), tokenizer from the run's config;
- ``model.init_from``: a params checkpoint directory (converted from the Hub
  or written by ``export_params``), tokenizer from that directory unless
  ``data.tokenizer`` says otherwise;
- neither: random params of ``model.preset`` (a chance-level baseline), with
  the special token ids of ``data.tokenizer``.

Params are placed on the ``mesh`` by their logical axes, so a model too big
for one device generates sharded like it trains.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from vtjax.data import batching, chat, examples
from vtjax.data.records import Record
from vtjax.data import tokenizer as tok_lib
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, init_params, lora, param_logical_axes
from vtjax.sampling import generate
from vtjax.train.config import ConfigError
from vtjax.convert.orbax_io import read_checkpoint_config, restore_params
from vtjax.sharding import make_mesh, shardings_for
from vtjax.train import export
from vtjax.train.data import match_tokenizer


@dataclasses.dataclass
class InferenceModel:
    """Everything needed to turn a prompt batch into answer texts."""

    config: Qwen25VLConfig
    params: Any  # the model's params pytree, placed on `mesh`
    tokenizer: tok_lib.Tokenizer
    prompts: chat.Prompts
    video: examples.VideoOptions
    source: str  # where the params came from (for logs and reports)
    image: examples.ImageOptions = examples.ImageOptions()  # sizing of image records


@dataclasses.dataclass(frozen=True)
class Decoding:
    """Sampling settings of an evaluation or a query."""

    max_new_tokens: int = 1024  # REFERENCE.md §1
    temperature: float = 0.0  # 0 = greedy (the paper's 0.1 with top_p 0.001 is greedy too)
    top_p: float = 1.0  # 1 = off
    top_k: int = 0  # 0 = off
    seed: int = 0  # PRNG seed when temperature > 0


def prompts_of(config) -> chat.Prompts:
    """The prompts of ``config.data`` (see ``chat.Prompts.from_config``)."""
    return chat.Prompts.from_config(config.data)


def video_options(config) -> examples.VideoOptions:
    d = config.data
    return examples.VideoOptions.from_config(d)


def _with_runtime(cfg: Qwen25VLConfig, config) -> Qwen25VLConfig:
    m = config.model
    return cfg.replace(dtype=m.dtype, vision=dataclasses.replace(cfg.vision, attention_impl=m.attention_impl),
                       text=dataclasses.replace(cfg.text, attention_impl=m.attention_impl))


def load_model(config, mesh: jax.sharding.Mesh | None = None) -> InferenceModel:
    """The model ``config.model`` names (see the module docstring), on ``mesh`` (default: from ``config.mesh``)."""
    m, d = config.model, config.data
    mesh = mesh or make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    if m.from_workdir:
        model_cfg, params, step = export.restore_training_params(m.from_workdir)
        tok_path = d.tokenizer or export.training_tokenizer_path(export.training_config(m.from_workdir))
        source = f"{m.from_workdir} (step {step})"
    elif m.init_from:
        if not os.path.isdir(m.init_from):
            raise ConfigError(f"model.init_from={m.init_from!r} is not a directory; convert a checkpoint with "
                              "`python -m vtjax.convert hf-to-orbax` or export one with vtjax.train.export")
        model_cfg = read_checkpoint_config(m.init_from)
        params = restore_params(m.init_from, mesh=mesh)  # each array straight into its sharding
        tok_path, source = d.tokenizer or m.init_from, m.init_from
    else:
        if not d.tokenizer:
            raise ConfigError("a random model needs data.tokenizer (its special token ids); or set "
                              "model.init_from / model.from_workdir to a trained model")
        model_cfg = Qwen25VLConfig.preset(m.preset)
        tok_path, source = d.tokenizer, f"random {m.preset} (seed {config.seed})"
        model_cfg = match_tokenizer(model_cfg, tok_lib.load_tokenizer(tok_path), adopt=True)
        params = init_params(model_cfg, config.seed)
    if not tok_path:
        raise ConfigError("no tokenizer: set data.tokenizer to the tokenizer the model was trained with")
    tokenizer = tok_lib.load_tokenizer(tok_path)
    model_cfg = _with_runtime(match_tokenizer(model_cfg, tokenizer, adopt=False), config)
    if model_cfg.lora is not None:  # LoRA adapters folded into their kernels: the base model's speed
        params, model_cfg = lora.merge(model_cfg.lora, params), model_cfg.replace(lora=None)
    shardings = shardings_for(param_logical_axes(model_cfg), params, mesh)
    params = jax.device_put(params, shardings)
    return InferenceModel(model_cfg, params, tokenizer, prompts_of(config), video_options(config), source,
                          examples.ImageOptions.from_config(config.data))


def decode_texts(tokenizer: tok_lib.Tokenizer, tokens: np.ndarray, lengths: np.ndarray) -> list[str]:
    """Generated rows -> texts: each row's first ``length`` tokens, special tokens (EOS) dropped."""
    return [tokenizer.decode(row[:n].tolist(), skip_special_tokens=True) for row, n in zip(tokens, lengths, strict=True)]


def generate_texts(model: InferenceModel, batch: dict, decoding: Decoding, num_samples: int = 1) -> list[str]:
    """Answers of one collated prompt batch (``batching.collate`` layout), ``num_samples`` per prompt."""
    hf, _ = batching.model_inputs(batch)
    out = generate(model.config, model.params, **hf, max_new_tokens=decoding.max_new_tokens,
                   num_samples=num_samples, temperature=decoding.temperature, top_p=decoding.top_p,
                   top_k=decoding.top_k, eos_token_ids=model.tokenizer.eos_ids, seed=decoding.seed)
    return decode_texts(model.tokenizer, out["tokens"], out["lengths"])


def prompt_batch(model: InferenceModel, video_path: str, question: str, options: Sequence[str] = ()) -> dict:
    """One collated prompt (video + question + options) built as the eval pipeline builds it."""
    record = Record(uid="query", problem=question, problem_type="multiple choice" if options else "free-form",
                    options=tuple(options), video_path=os.path.abspath(video_path), data_source="query",
                    process="", solution="", answer="", location="query")
    example = examples.ExampleBuilder(model.tokenizer, model.prompts, "eval", model.video, max_length=1 << 30)(record)
    if isinstance(example, examples.Skipped):
        raise ValueError(f"cannot use video {video_path!r}: {example.reason}")
    return batching.collate([example], pad_id=model.tokenizer.pad_id)
