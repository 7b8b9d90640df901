"""Synthetic verifiable video reasoning: shapes that appear, move and disappear, with temporal questions.

`write_dataset(out_dir, SyntheticConfig(...))` writes, once per config
(cached by a hash of the config and the generator version):

    out_dir/synthetic-<hash>/
      train.jsonl, test.jsonl      Video-Thinker records (+ id, segments, question_type, scene)
      videos/{train,test}/NNNNNN.mp4
      tokenizer.model              sentencepiece, Qwen special tokens and reasoning tags as single ids
      config.json

Each record is generated from its own seed ([seed, split, index]), so records
do not depend on how many others are generated or in what order. The record's
`process` is a ground-truth trace in the Video-Thinker format; `segments` are
its `<time>` spans, for grounding metrics. See docs/synthetic.md.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import shutil
from collections.abc import Sequence

import numpy as np

from vtjax.data import chat
from vtjax.data import synthetic_questions as questions
from vtjax.data import synthetic_scene as scene_lib
from vtjax.data import tokenizer as tok_lib

GENERATOR_VERSION = 1  # bump when the output of the same config changes
SPLITS = {"train": 0, "test": 1}
DATA_SOURCE = "synthetic"
REASONING_TAGS = ("<time>", "</time>", "<caption>", "</caption>", "<think>", "</think>", "<answer>", "</answer>")
LETTERS = "ABCD"
_MAX_SCENES = 200  # scene draws per record before giving up
OPTION_ORDERS = ("shuffled", "palette")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the dataset (its hash names the cache directory)."""

    seed: int = 0
    num_train: int = 800  # records in the train split
    num_test: int = 200  # records in the test split
    min_objects: int = 2  # objects per video, drawn uniformly in [min, max]
    max_objects: int = 4  # (at most 4 can share the screen: one per quadrant)
    distractors: int = 2  # wrong options naming objects that are in the video (rest: absent ones)
    min_duration_s: int = 4  # video length in whole seconds, uniform in [min, max]
    max_duration_s: int = 8
    fps: int = 4  # frames per second; min_duration_s * fps must cover the frames a model samples (16)
    size: int = 112  # frame height = width, pixels (a multiple of 28 avoids resizing)
    object_size: float = scene_lib.HALF_SIZE  # object half-width / frame side (a quadrant is 0.5; <= 0.25)
    move_prob: float = 0.6  # chance that an object living >= 3 s moves once
    colours: int = len(scene_lib.COLOURS)  # palette size: objects take the first `colours` colours (>= max_objects)
    sequential: bool = False  # objects take turns on screen, one at a time, in equal slots (no moves)
    option_order: str = "shuffled"  # "shuffled", or "palette": a fixed canonical order (see option_sort_key)
    question_kinds: tuple[str, ...] = tuple(questions.QUESTION_KINDS)  # kinds to ask, uniformly
    crf: int = 12  # H.264 quality (lower: closer colours, bigger files)
    vocab_size: int = 512  # sentencepiece vocabulary (256 byte pieces + specials + merges)

    def __post_init__(self):
        unknown = sorted(set(self.question_kinds) - set(questions.QUESTION_KINDS))
        if unknown:
            raise ValueError(f"question_kinds {unknown} unknown; choose from {sorted(questions.QUESTION_KINDS)}.")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}.")
        if not 3 <= self.min_duration_s <= self.max_duration_s:
            raise ValueError(f"need 3 <= min_duration_s <= max_duration_s, got "
                             f"{self.min_duration_s}, {self.max_duration_s}.")
        if self.max_duration_s >= 100 * 60:
            raise ValueError("max_duration_s must stay below 100 minutes (MM:SS time stamps).")
        if not self.max_objects <= self.colours <= len(scene_lib.COLOURS):
            raise ValueError(f"colours={self.colours} must lie in [max_objects={self.max_objects}, "
                             f"{len(scene_lib.COLOURS)}]: every object in a video has its own colour.")
        if self.sequential and self.min_duration_s < self.max_objects:
            raise ValueError(f"sequential scenes give each object >= 1 s: min_duration_s={self.min_duration_s} "
                             f"< max_objects={self.max_objects}.")
        if self.option_order not in OPTION_ORDERS:
            raise ValueError(f"option_order={self.option_order!r}; use one of {OPTION_ORDERS}.")
        if not 0.02 <= self.object_size <= 0.25:
            raise ValueError(f"object_size={self.object_size} must lie in [0.02, 0.25] (an object fits its quadrant).")
        if self.size < 28 or self.fps < 1:
            raise ValueError(f"size={self.size} must be >= 28 and fps={self.fps} >= 1.")

    def fingerprint(self, extra_texts: Sequence[str] = ()) -> str:
        payload = json.dumps([GENERATOR_VERSION, dataclasses.asdict(self), list(extra_texts)], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
    """Paths of a written dataset."""

    root: str
    video_root: str  # records' `path` is relative to this
    train_path: str
    test_path: str
    tokenizer_path: str
    config: SyntheticConfig


def make_record(config: SyntheticConfig, split: str, index: int) -> dict:
    """Record `index` of `split`: scene, question, shuffled options, trace, segments (no video written)."""
    rng = np.random.default_rng([config.seed, SPLITS[split], index])
    kinds = config.question_kinds
    kind = kinds[int(rng.integers(len(kinds)))]  # kinds stay balanced: draw scenes until one fits
    for attempt in range(_MAX_SCENES):
        duration = int(rng.integers(config.min_duration_s, config.max_duration_s + 1))
        n = int(rng.integers(config.min_objects, config.max_objects + 1))
        colours = scene_lib.palette(config.colours)
        if config.sequential:
            scene = scene_lib.sequential_scene(rng, num_objects=n, duration=duration, colours=colours)
        else:
            scene = scene_lib.random_scene(rng, num_objects=n, duration=duration, move_prob=config.move_prob,
                                           colours=colours)
        if attempt >= _MAX_SCENES // 2:  # this config rarely supports `kind`: take any kind
            kind = kinds[int(rng.integers(len(kinds)))]
        q = questions.ask(scene, rng, kind, config.distractors)
        if q is not None:
            break
    else:
        raise RuntimeError(f"no scene supported the question kinds {kinds} in {_MAX_SCENES} tries; "
                           "allow more objects, longer videos or more kinds.")
    texts = [q.correct, *q.wrong]
    if config.option_order == "palette":
        order = np.asarray(sorted(range(len(texts)), key=lambda i: option_sort_key(texts[i])))
    else:
        order = rng.permutation(len(texts))
    options = [f"{LETTERS[i]}. {texts[j]}" for i, j in enumerate(order)]
    answer = LETTERS[int(np.flatnonzero(order == 0)[0])]
    return {
        "id": f"{DATA_SOURCE}-{split}-{index:06d}",
        "problem": q.problem,
        "problem_type": "multiple choice",
        "options": options,
        "data_type": "video",
        "path": f"{split}/{index:06d}.mp4",
        "data_source": DATA_SOURCE,
        "process": q.trace(),
        "solution": f"<answer>{answer}</answer>",
        "segments": [[b.start, b.end] for b in q.blocks],
        "question_type": q.kind,
        "scene": scene.to_json(),
        "fps": config.fps,
    }


def option_sort_key(text: str) -> tuple:
    """Canonical option order: objects by palette colour then shape, numbers ascending, quadrants, other text.

    With ``option_order="palette"`` a letter always stands for the same colour
    (A = red, B = green, ...), so a model answers by seeing, not by looking an
    object name up in the option list.
    """
    colour, _, shape = text.partition(" ")
    names = list(scene_lib.COLOURS)
    if colour in names and shape in scene_lib.SHAPES:
        return (0, names.index(colour), scene_lib.SHAPES.index(shape), "")
    if text.isdigit():
        return (1, int(text), 0, "")
    if text in scene_lib.REGIONS:
        return (2, scene_lib.REGIONS.index(text), 0, "")
    return (3, 0, 0, text)


def generate_records(config: SyntheticConfig, split: str) -> list[dict]:
    """All records of a split, in index order."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; use one of {tuple(SPLITS)}.")
    count = config.num_train if split == "train" else config.num_test
    return [make_record(config, split, i) for i in range(count)]


def render_record_video(record: dict, config: SyntheticConfig) -> np.ndarray:
    """uint8 [duration * fps, size, size, 3] frames of a record's scene."""
    return scene_lib.render_frames(scene_lib.Scene.from_json(record["scene"]), config.fps, config.size,
                                  config.object_size)


def _write_videos(job: tuple[list[dict], SyntheticConfig, str]) -> int:
    records, config, video_root = job
    for r in records:
        scene_lib.write_mp4(os.path.join(video_root, r["path"]), render_record_video(r, config), config.fps, config.crf)
    return len(records)


def tokenizer_corpus(records: Sequence[dict], extra_texts: Sequence[str] = ()) -> list[str]:
    """Lines of text the tokenizer is trained on: questions, options, SFT targets, prompts."""
    lines = []
    for r in records:
        for text in (r["problem"], "Options:", *r["options"], r["process"], r["solution"]):
            lines.extend(text.split("\n"))
    for text in extra_texts:
        lines.extend(text.split("\n"))
    return [line for line in lines if line]


def train_tokenizer(lines: Sequence[str], path: str, vocab_size: int = 512) -> str:
    """Trains a byte-fallback BPE sentencepiece model; writes `path` (.model) and returns it.

    Qwen's special tokens, the reasoning tags and "\\n" are user symbols (one id
    each); identity normalisation and no dummy prefix make decode(encode(x)) == x.
    """
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel

    if not path.endswith(".model"):
        raise ValueError(f"{path}: the tokenizer path must end in .model (load_tokenizer reads it by suffix).")
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
        user_defined_symbols=[*tok_lib.SPECIAL_TOKENS, *REASONING_TAGS, "\n"],
        hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def _default_extra_texts() -> list[str]:
    try:
        p = chat.Prompts.video_thinker()
    except OSError:
        return []
    return [p.system, p.question_template]


def _paths(root: str, config: SyntheticConfig) -> SyntheticDataset:
    return SyntheticDataset(root, os.path.join(root, "videos"), os.path.join(root, "train.jsonl"),
                            os.path.join(root, "test.jsonl"), os.path.join(root, "tokenizer.model"), config)


def _build(tmp: str, config: SyntheticConfig, extra: Sequence[str], workers: int, progress: bool) -> None:
    """Records, videos, tokenizer and config.json (last) under `tmp`."""
    import tqdm  # pylint: disable=import-outside-toplevel

    paths = _paths(tmp, config)
    all_records = []
    jobs = []
    for split in SPLITS:
        os.makedirs(os.path.join(paths.video_root, split), exist_ok=True)
        records = generate_records(config, split)
        all_records.extend(records)
        with open(paths.train_path if split == "train" else paths.test_path, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        step = max(1, len(records) // (4 * max(workers, 1)))
        jobs += [(records[i : i + step], config, paths.video_root) for i in range(0, len(records), step)]
    bar = tqdm.tqdm(total=len(all_records), desc="synthetic videos", unit="video", disable=not progress)
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold JAX threads
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for n in pool.map(_write_videos, jobs):
                bar.update(n)
    else:
        for job in jobs:
            bar.update(_write_videos(job))
    bar.close()
    train_tokenizer(tokenizer_corpus(all_records, extra), paths.tokenizer_path, config.vocab_size)
    with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"generator_version": GENERATOR_VERSION, "config": dataclasses.asdict(config),
                   "extra_texts": extra}, f, indent=1)


def write_dataset(
    out_dir: str,
    config: SyntheticConfig = SyntheticConfig(),
    *,
    extra_texts: Sequence[str] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> SyntheticDataset:
    """Writes records, videos and tokenizer under `out_dir/synthetic-<hash>/`, or reuses them.

    Args:
      out_dir: parent directory (created if needed).
      config: the dataset's knobs.
      extra_texts: more text for the tokenizer to cover (the system prompt and
        question template); default: vtjax's Video-Thinker prompts.
      workers: processes that render and encode videos (spawned; 1 = in this process).
      progress: show a progress bar while videos are written.

    Returns:
      The dataset's paths. A directory is complete once `config.json` is in it:
      it is built under a temporary name and renamed at the end.
    """
    extra = list(_default_extra_texts() if extra_texts is None else extra_texts)
    root = os.path.join(os.fspath(out_dir), f"synthetic-{config.fingerprint(extra)}")
    if os.path.isfile(os.path.join(root, "config.json")):
        return _paths(root, config)
    tmp = f"{root}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build(tmp, config, extra, workers, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, root)
    except OSError:  # another process finished the same dataset first
        if not os.path.isfile(os.path.join(root, "config.json")):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return _paths(root, config)
