"""grain pipelines for SFT, GRPO and evaluation.

  records -> shuffle(seed), per epoch -> repeat(num_epochs) -> this process's
  share (every process_count-th example) -> ExampleBuilder in worker
  processes -> [main process] count and drop Skipped, batch (or pack rows of
  token_budget tokens), pad to buckets

Batching runs in the main process, after the workers, so the skipped-input
budget is counted in one place and a batch's contents do not depend on the
number of workers. The iterator's state (grain's, plus our counters) is a
JSON-friendly dict: `set_state` on a fresh pipeline continues with exactly the
batch that would have come next.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import grain
from absl import flags
import numpy as np

from vtjax import errors
from vtjax.data import batching, chat, examples, packing
from vtjax.data import tokenizer as tok_lib
from vtjax.data.records import Record, RecordProblem

log = logging.getLogger(__name__)


class BadDataError(errors.DataError):
    """Too much of the data could not be used; the message lists what and why."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Batching, order and failure budget of one pipeline."""

    batch_size: int  # examples per batch on this process
    seed: int = 0  # shuffle seed (each epoch reshuffles)
    shuffle: bool = True  # False keeps file order (eval)
    num_epochs: int | None = 1  # None repeats forever
    worker_count: int = 0  # decoding processes; 0 decodes in the main process
    worker_buffer_size: int = 2  # examples each worker prepares ahead
    length_buckets: tuple[int, ...] | None = None  # text lengths; None: the vtjax.buckets series
    patch_buckets: tuple[int, ...] | None = None  # vision rows per batch; None: the same series
    padding_side: str = "right"  # "left" puts every prompt's end at the same position
    token_budget: int = 0  # > 0 packs several examples into each row of this many tokens (SFT)
    pack_lookahead: int = 16  # packing: examples drawn beyond what could fill a batch, to choose from
    drop_remainder: bool = True  # False pads the last batch with copies marked invalid
    max_bad_fraction: float = 0.05  # stop when more than this share of examples is unusable
    min_examples_for_budget: int = 100  # the share is taken over at least this many


def _summary(problems: Sequence, total: int, limit: int = 20) -> str:
    lines = [f"{len(problems)} of {total} examples unusable:"]
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


class _BatchIterator(grain.DatasetIterator):
    """Drops and counts Skipped examples, enforces the budget, collates batches."""

    def __init__(self, parent, ds: _BatchDataset):
        super().__init__(parent)
        self._ds = ds
        self._seen = 0  # examples pulled from the parent
        self._skipped: list[str] = []  # "record_id (path): reason", most recent last
        self._num_skipped = 0
        self._warned: set[str] = set()  # skip messages already logged; a repeat (next epoch) is only counted
        self._done = False

    @property
    def stats(self) -> dict:
        """Examples seen and skipped so far on this process, with the latest reasons."""
        return {"seen": self._seen, "skipped": self._num_skipped, "recent_skips": list(self._skipped)}

    def _account(self, skipped: examples.Skipped):
        self._num_skipped += 1
        message = f"{skipped.record_id} ({skipped.path}): {skipped.reason}"
        self._skipped = (self._skipped + [message])[-20:]
        if message not in self._warned:
            self._warned.add(message)
            log.warning("skipping example %s", message)
        denominator = max(self._seen, self._ds.budget_size, self._ds.config.min_examples_for_budget)
        if self._num_skipped > self._ds.config.max_bad_fraction * denominator:
            raise BadDataError(
                f"{self._num_skipped} of {self._seen} examples seen could not be used, more than "
                f"max_bad_fraction={self._ds.config.max_bad_fraction}; most recent:\n  "
                + "\n  ".join(self._skipped)
            )

    def _pull(self) -> tuple[int, dict] | None:
        """(stream index, example) of the next usable example; None at the end of the stream."""
        while not self._done:
            try:
                item = next(self._parent)
            except StopIteration:
                self._done = True
                break
            index = self._seen
            self._seen += 1
            if isinstance(item, examples.Skipped):
                self._account(item)
            else:
                return index, item
        return None

    def __next__(self) -> dict:
        cfg = self._ds.config
        batch = []
        while len(batch) < cfg.batch_size and (pulled := self._pull()) is not None:
            batch.append(pulled[1])
        if not batch or (len(batch) < cfg.batch_size and cfg.drop_remainder):
            raise StopIteration
        valid = [True] * len(batch) + [False] * (cfg.batch_size - len(batch))
        batch += [batch[-1]] * (cfg.batch_size - len(batch))
        out = batching.collate(
            batch, pad_id=self._ds.pad_id, length_buckets=cfg.length_buckets,
            patch_buckets=cfg.patch_buckets, padding_side=cfg.padding_side,
            with_labels=self._ds.with_labels,
        )
        out["example_mask"] = np.asarray(valid, bool)  # [B]; False on padding copies
        return out

    def get_state(self) -> dict:
        return {
            "parent": self._parent.get_state(),
            "seen": self._seen,
            "num_skipped": self._num_skipped,
            "recent_skips": list(self._skipped),
            "done": self._done,
            "shard": self._ds.shard,
            "num_shards": self._ds.num_shards,
        }

    def set_state(self, state: dict):
        if "resharded_from" in state:
            self._start_where_others_stopped(state["resharded_from"])
            return
        self._parent.set_state(state["parent"])
        self._seen = int(state["seen"])
        self._num_skipped = int(state["num_skipped"])
        self._skipped = list(state["recent_skips"])
        self._done = bool(state["done"])


    def _start_where_others_stopped(self, saved: list[dict]):
        """Continues a stream saved by another number of shards (e.g. a run resumed on fewer hosts).

        Shard k of n reads elements k, k + n, ... of one shuffled, repeated stream, so n shards that each
        pulled ``seen`` elements consumed exactly its first n * seen. This shard starts right after the
        part every old shard had consumed (the least ``seen``), so no example is left out; with uneven
        progress (skipped inputs) or sizes that do not divide, a few are read again.
        """
        shards = {int(s.get("shard", i)): s for i, s in enumerate(saved)}  # one state per shard
        num_old = int(saved[0].get("num_shards", len(saved)))
        # A shard's examples before its oldest held one (packing) or before `seen` were all trained on.
        consumed = min(min(map(int, s.get("held") or [s["seen"]])) for s in shards.values()) * num_old
        start = consumed // self._ds.num_shards
        if consumed % self._ds.num_shards or len({int(s["seen"]) for s in shards.values()}) > 1:
            log.warning("data saved by %d shards resumes on %d: up to %d examples are read again",
                        num_old, self._ds.num_shards, self._ds.num_shards + num_old * self._ds.config.batch_size)
        grain.experimental.set_next_index(self._parent, start)
        self._seen = start
        self._num_skipped = sum(int(s["num_skipped"]) for s in shards.values()) // self._ds.num_shards
        self._skipped, self._done = [], False


class _PackedIterator(_BatchIterator):
    """Fills each batch's rows with whole examples (``packing.pack_rows``); holds back the ones that do not fit.

    The pool of a batch is the examples held back so far, then new ones until the pool could fill every row
    and ``pack_lookahead`` more. The held examples' stream indices are part of the state, and a resumed
    iterator rebuilds them by random access into the example stream, so an interrupted run gets the batches
    of an uninterrupted one.
    """

    def __init__(self, parent, ds: _BatchDataset):
        super().__init__(parent, ds)
        self._held: list[tuple[int, dict]] = []  # (stream index, example), oldest first

    def __next__(self) -> dict:
        cfg = self._ds.config
        capacity = cfg.batch_size * cfg.token_budget
        pool, self._held = self._held, []
        tokens = sum(len(e["input_ids"]) for _, e in pool)
        extra = 0  # examples pulled once the pool could fill the batch
        while (tokens < capacity or extra < cfg.pack_lookahead) and (pulled := self._pull()) is not None:
            pool.append(pulled)
            tokens += len(pulled[1]["input_ids"])
            extra += tokens >= capacity
        rows = packing.pack_rows([len(e["input_ids"]) for _, e in pool], cfg.batch_size, cfg.token_budget)
        placed = {i for row in rows for i in row}
        self._held = [p for i, p in enumerate(pool) if i not in placed]
        if not placed or (self._done and cfg.drop_remainder and not all(rows)):
            if pool:
                log.info("the stream ended; %d examples that fill no whole batch are left out", len(pool))
                self._held = []
            raise StopIteration
        out = batching.collate_packed([[pool[i][1] for i in row] for row in rows], pad_id=self._ds.pad_id,
                                      token_budget=cfg.token_budget, patch_buckets=cfg.patch_buckets,
                                      with_labels=self._ds.with_labels)
        out["example_mask"] = np.asarray([bool(row) for row in rows])  # [R]; False on an empty row
        return out

    def get_state(self) -> dict:
        return {**super().get_state(), "held": [index for index, _ in self._held]}

    def set_state(self, state: dict):
        super().set_state(state)
        held = [] if "resharded_from" in state else state.get("held", [])
        self._held = [(int(i), self._ds.examples[int(i)]) for i in held]


class _BatchDataset(grain.IterDataset):
    def __init__(self, parent, config: PipelineConfig, pad_id: int, with_labels: bool, budget_size: int,
                 shard: int = 0, num_shards: int = 1, examples_by_index=None):
        super().__init__(parent)
        self.examples = examples_by_index  # the example stream by index (rebuilds held examples on resume)
        self.shard, self.num_shards = shard, num_shards  # this process's share of the stream
        self.config = config
        self.pad_id = pad_id
        self.with_labels = with_labels
        self.budget_size = budget_size  # examples per epoch on this process

    def __iter__(self) -> _BatchIterator:
        packed = self.config.token_budget > 0
        return (_PackedIterator if packed else _BatchIterator)(self._parent.__iter__(), self)


def _process_share(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None or process_count is None:
        import jax  # pylint: disable=import-outside-toplevel

        process_index, process_count = jax.process_index(), jax.process_count()
    if not 0 <= process_index < process_count:
        raise ValueError(f"{process_index=} must be in [0, {process_count=}).")
    return process_index, process_count


def check_record_problems(problems: Sequence[RecordProblem], total: int, max_bad_fraction: float):
    """Logs refused records; raises BadDataError when they exceed the budget."""
    for p in problems:
        log.warning("skipping record %s", p)
    if total and len(problems) > max_bad_fraction * total:
        raise BadDataError(
            f"record validation: {_summary(problems, total)}\n"
            f"(max_bad_fraction={max_bad_fraction}; fix the records or raise the budget)"
        )


def make_pipeline(
    records: Sequence[Record],
    builder: examples.ExampleBuilder,
    config: PipelineConfig,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """The pipeline for `builder.mode`; iterate it with `iter(...)`.

    Args:
      records: validated records (the same list, in the same order, on every process).
      builder: per-example work (video options, prompts, tokenizer, mode).
      config: batching, order, workers and failure budget.
      process_index, process_count: this host's share; default from jax.

    Returns:
      An IterDataset whose iterator yields batches (see `batching.collate`,
      plus `example_mask` bool [B]) and has get_state / set_state / stats.
    """
    if not records:
        raise ValueError("no records to iterate; check the record files and their validation report.")
    index, count = _process_share(process_index, process_count)
    ds = grain.MapDataset.source(list(records))
    if config.shuffle:
        ds = ds.shuffle(seed=config.seed)
    ds = ds.repeat(config.num_epochs)
    ds = ds[index::count]
    ds = ds.map(builder)
    if config.token_budget > 0 and builder.mode != "sft":
        raise ValueError(f"token_budget={config.token_budget} packs SFT examples; the {builder.mode} pipeline "
                         "keeps one example per row")
    it = ds.to_iter_dataset()
    if config.worker_count > 0:
        if not flags.FLAGS.is_parsed():
            # grain's worker start-up reads its absl flags; outside an absl app (tests,
            # notebooks) nothing parsed them, so their defaults apply.
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=config.worker_count, per_worker_buffer_size=config.worker_buffer_size
            )
        )
    per_process = -(-len(records) // count)
    return _BatchDataset(
        it, config, builder.tokenizer.pad_id, with_labels=builder.mode == "sft", budget_size=per_process,
        shard=index, num_shards=count, examples_by_index=ds,
    )


def sft_pipeline(
    records: Sequence[Record],
    tokenizer: tok_lib.Tokenizer,
    prompts: chat.Prompts,
    config: PipelineConfig,
    *,
    video: examples.VideoOptions = examples.VideoOptions(),
    image: examples.ImageOptions = examples.ImageOptions(),
    max_length: int = 8192,
    include_prompt_in_loss: bool = False,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """SFT batches: prompt + `process\\nsolution`, with labels / loss_mask on the answer."""
    builder = examples.ExampleBuilder(
        tokenizer, prompts, "sft", video, max_length=max_length,
        include_prompt_in_loss=include_prompt_in_loss, image=image,
    )
    return make_pipeline(records, builder, config, process_index=process_index, process_count=process_count)


def grpo_pipeline(
    records: Sequence[Record],
    tokenizer: tok_lib.Tokenizer,
    prompts: chat.Prompts,
    config: PipelineConfig,
    *,
    video: examples.VideoOptions = examples.VideoOptions(),
    image: examples.ImageOptions = examples.ImageOptions(),
    max_length: int = 16384,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """GRPO batches: prompts, plus `solution`, `answer`, `problem_type` for the rewards."""
    builder = examples.ExampleBuilder(tokenizer, prompts, "grpo", video, max_length=max_length, image=image)
    return make_pipeline(records, builder, config, process_index=process_index, process_count=process_count)


def eval_pipeline(
    records: Sequence[Record],
    tokenizer: tok_lib.Tokenizer,
    prompts: chat.Prompts,
    config: PipelineConfig,
    *,
    video: examples.VideoOptions = examples.VideoOptions(),
    image: examples.ImageOptions = examples.ImageOptions(),
    max_length: int = 16384,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.IterDataset:
    """Eval batches: prompts and `record_id`s, one pass in file order, last batch padded."""
    config = dataclasses.replace(config, shuffle=False, num_epochs=1, drop_remainder=False)
    builder = examples.ExampleBuilder(tokenizer, prompts, "eval", video, max_length=max_length, image=image)
    return make_pipeline(records, builder, config, process_index=process_index, process_count=process_count)
