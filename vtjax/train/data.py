"""The training data of a config: this process's batch iterator, and the model config it implies.

``data.source = "records"`` runs the pipeline of ``vtjax.data`` over Video-R1
records (videos and images, mixed in one stream); ``"synthetic"`` draws random in-memory batches. Either way
the iterator yields HF-layout batch dicts of this process's share and has
``get_state`` / ``set_state`` / ``stats``.
"""

from __future__ import annotations

import dataclasses

from jax.sharding import Mesh

from vtjax.data import chat, examples, pipeline, records
from vtjax.data import tokenizer as tok_lib
from vtjax.models.qwen2_5_vl import Qwen25VLConfig
from vtjax.train.batch import data_shard
from vtjax.train.config import ConfigError, parse_video_roots, split_list
from vtjax.train import synthetic

# Model config field -> the tokenizer's special token that must carry the same id.
_TOKEN_FIELDS = {
    "image_token_id": tok_lib.IMAGE_PAD, "video_token_id": tok_lib.VIDEO_PAD,
    "vision_start_token_id": tok_lib.VISION_START, "vision_end_token_id": tok_lib.VISION_END,
    "eos_token_id": tok_lib.IM_END,
}


def match_tokenizer(model_cfg: Qwen25VLConfig, tok: tok_lib.Tokenizer, *, adopt: bool) -> Qwen25VLConfig:
    """Checks the model's special token ids against the tokenizer's.

    ``adopt`` (random init: the ids mean nothing yet) takes the tokenizer's ids instead.
    """
    if tok.vocab_size > model_cfg.text.vocab_size:
        raise ConfigError(f"data.tokenizer has {tok.vocab_size} ids but the model's vocabulary holds "
                          f"{model_cfg.text.vocab_size}; use the checkpoint's tokenizer")
    wanted = {field: tok.token_to_id(token) for field, token in _TOKEN_FIELDS.items()}
    if adopt:
        return model_cfg.replace(**wanted, bos_token_id=tok.pad_id, pad_token_id=tok.pad_id)
    wrong = {f: (getattr(model_cfg, f), i) for f, i in wanted.items() if getattr(model_cfg, f) != i}
    if wrong:
        detail = ", ".join(f"{f}: model {m} vs tokenizer {t}" for f, (m, t) in wrong.items())
        raise ConfigError(f"data.tokenizer does not match model.init_from's special tokens ({detail}); "
                          "use the tokenizer stored with the checkpoint")
    return model_cfg


def train_data(config, model_cfg: Qwen25VLConfig, mesh: Mesh):
    """(iterator, model_cfg, examples per epoch) for this process."""
    shard, num_shards = data_shard(mesh)
    d, t = config.data, config.train
    if d.source == "synthetic":
        return synthetic.from_config(config, model_cfg, shard, num_shards), model_cfg, d.synthetic_examples
    source = record_source(config, model_cfg, require_process=True)
    model_cfg, tok, recs, prompts = source.model_cfg, source.tokenizer, source.records, source.prompts
    pipe_cfg = pipeline.PipelineConfig(
        batch_size=t.batch_size // num_shards, seed=config.seed,
        num_epochs=None if t.num_steps else t.num_epochs, worker_count=d.worker_count,
        length_buckets=tuple(d.length_buckets) or None, patch_buckets=tuple(d.patch_buckets) or None,
        max_bad_fraction=d.max_bad_fraction, token_budget=d.token_budget if d.packing else 0,
        pack_lookahead=d.pack_lookahead)
    max_length = min(d.max_length, d.token_budget) if d.packing else d.max_length  # an example fills a row at most
    ds = pipeline.sft_pipeline(recs, tok, prompts, pipe_cfg, video=source.video, image=source.image,
                               max_length=max_length, include_prompt_in_loss=d.include_prompt_in_loss,
                               process_index=shard, process_count=num_shards)
    return iter(ds), model_cfg, len(recs)


@dataclasses.dataclass(frozen=True)
class RecordSource:
    """What every record-driven mode needs: the model config, tokenizer, records, prompts, video options."""

    model_cfg: Qwen25VLConfig  # with the tokenizer's special ids adopted on a random init
    tokenizer: tok_lib.Tokenizer
    records: list  # validated Video-R1 records
    prompts: chat.Prompts  # system prompt + question template
    video: examples.VideoOptions  # frame count and pixel budget
    image: examples.ImageOptions  # pixel budget of image records


def record_source(config, model_cfg: Qwen25VLConfig, *, require_process: bool) -> RecordSource:
    """Loads the tokenizer and records of ``config.data`` and checks them against the model."""
    d = config.data
    tok = tok_lib.load_tokenizer(d.tokenizer or config.model.init_from)
    model_cfg = match_tokenizer(model_cfg, tok, adopt=not config.model.init_from)
    recs, problems = records.load_records(split_list(d.train_files), parse_video_roots(d.video_roots),
                                          require_process=require_process)
    pipeline.check_record_problems(problems, len(recs) + len(problems), d.max_bad_fraction)
    if not recs:
        raise ConfigError(f"data.train_files {d.train_files!r} hold no usable records")
    return RecordSource(model_cfg, tok, recs, chat.Prompts.from_config(d), examples.VideoOptions.from_config(d),
                        examples.ImageOptions.from_config(d))

