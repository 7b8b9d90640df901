"""Qwen chat template for one video (or image) question, with the SFT label mask.

  <|im_start|>system\\n{system}<|im_end|>\\n
  <|im_start|>user\\n<|vision_start|><|video_pad|>*N<|vision_end|>{question}<|im_end|>\\n
  <|im_start|>assistant\\n{answer}<|im_end|>\\n

N = grid_t * grid_h * grid_w / 4, as the HF processor expands it; an image
record has `<|image_pad|>` in place of `<|video_pad|>`. The prompt
and the answer are encoded separately and concatenated, so the answer's ids
are exactly what the model produces when it generates after the prompt.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np

from vtjax import errors
from vtjax.data import tokenizer as tok_lib
from vtjax.data.records import DataType

PROMPTS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "prompts")
DEFAULT_SYSTEM = "You are a helpful assistant."  # Qwen's template default.


@dataclasses.dataclass(frozen=True)
class Prompts:
    """The system turn, the user-turn template and optional per-problem-type instructions.

    The template must hold `{question}` (the question in Video-R1's layout) and
    may hold `{video_summary}` (the record's `video_summary`, e.g. VRBench's;
    empty when it has none). The instruction of the record's problem type, if
    any, is appended after the filled template, as Video-R1 appends its
    per-type instruction.
    """

    system: str
    question_template: str = "{question}"
    # (problem_type, text appended after the template) pairs; a tuple so Prompts stays hashable
    type_instructions: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if "{question}" not in self.question_template:
            raise ValueError(
                "question_template must contain the placeholder {question}; got "
                f"{self.question_template[:80]!r}..."
            )

    def user_text(self, problem: str, options: Sequence[str], problem_type: str = "", video_summary: str = "") -> str:
        """The user turn's text for one question."""
        template = self.question_template.replace("{video_summary}", video_summary)
        return format_question(problem, options, template) + dict(self.type_instructions).get(problem_type, "")

    @classmethod
    def from_config(cls, data) -> Prompts:
        """From a config's `data` section: system_prompt, question_prompt (each "" = vtjax's Video-Thinker
        file) and type_instructions ("" = none); a file that cannot be used raises ConfigError naming it."""
        default = cls.video_thinker()
        system = _read_prompt(data.system_prompt, "data.system_prompt") if data.system_prompt else default.system
        question = (_read_prompt(data.question_prompt, "data.question_prompt") if data.question_prompt
                    else default.question_template)
        try:
            prompts = cls(system=system, question_template=question)
        except ValueError as e:
            raise errors.ConfigError(f"data.question_prompt: {e}") from e
        if not data.type_instructions:
            return prompts
        try:
            return prompts.with_type_instructions(data.type_instructions)
        except (OSError, ValueError) as e:
            raise errors.ConfigError(f"data.type_instructions: {e}") from e

    def with_type_instructions(self, path: str) -> Prompts:
        """A copy with the per-type instructions of a JSON file {problem_type: text}."""
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in table.items()):
            raise ValueError(f"{path}: expected a JSON object mapping problem types to instruction strings")
        return dataclasses.replace(self, type_instructions=tuple(sorted(table.items())))

    @classmethod
    def load(cls, system_path: str, question_path: str) -> Prompts:
        """Reads both prompt files (trailing whitespace stripped)."""
        with open(system_path, encoding="utf-8") as f:
            system = f.read().rstrip()
        with open(question_path, encoding="utf-8") as f:
            question = f.read().rstrip()
        return cls(system=system, question_template=question)

    @classmethod
    def video_thinker(cls) -> Prompts:
        """vtjax's wording of the Video-Thinker prompts, from configs/prompts/."""
        return cls.load(
            os.path.join(PROMPTS_DIR, "video_thinker_system.txt"),
            os.path.join(PROMPTS_DIR, "video_thinker_question.txt"),
        )


def _read_prompt(path: str, field: str) -> str:
    if not os.path.isfile(path):
        raise errors.ConfigError(f"{field}={path!r} does not exist; give a text file or '' for the default")
    with open(path, encoding="utf-8") as f:
        return f.read().rstrip()


def format_question(problem: str, options: Sequence[str], template: str = "{question}") -> str:
    """The question as Video-R1 lays it out, placed into `template` at `{question}`.

    With options (multiple choice): `problem + "Options:\\n"` and every option
    followed by a newline, nothing stripped or inserted (Video-R1 @59d65c3,
    `grpo.py`, `sft_video.py`, `eval_bench.py`). Without options: `problem`.
    """
    question = problem
    if options:
        question = problem + "Options:\n" + "".join(option + "\n" for option in options)
    return template.replace("{question}", question)


_PAD_OF = {DataType.VIDEO: tok_lib.VIDEO_PAD, DataType.IMAGE: tok_lib.IMAGE_PAD}


def render_prompt(system: str, user_text: str, *, vision_kind: DataType | None = DataType.VIDEO) -> str:
    """Prompt text with one unexpanded `<|video_pad|>` (or `<|image_pad|>`; none for None), as
    `apply_chat_template` writes it."""
    vision = "" if vision_kind is None else tok_lib.VISION_START + _PAD_OF[DataType(vision_kind)] + tok_lib.VISION_END
    return (
        f"{tok_lib.IM_START}system\n{system}{tok_lib.IM_END}\n"
        f"{tok_lib.IM_START}user\n{vision}{user_text}{tok_lib.IM_END}\n"
        f"{tok_lib.IM_START}assistant\n"
    )


@dataclasses.dataclass(frozen=True)
class EncodedChat:
    input_ids: np.ndarray  # int32 [L]
    loss_mask: np.ndarray  # bool [L]; True where the token is a training target
    prompt_length: int  # tokens up to and including "assistant\n"


def encode_chat(
    tokenizer: tok_lib.Tokenizer,
    *,
    system: str,
    user_text: str,
    vision_tokens: int | None,
    vision_kind: DataType = DataType.VIDEO,
    answer: str | None = None,
    include_prompt_in_loss: bool = False,
) -> EncodedChat:
    """Token ids of one conversation and its loss mask.

    Args:
      vision_tokens: `<|video_pad|>` (or `<|image_pad|>`) copies, grid_t*grid_h*grid_w/4; None for
        a text-only prompt.
      vision_kind: which pad token the video or image is expanded into.
      answer: assistant text; None encodes only the prompt (generation).
      include_prompt_in_loss: also train on the prompt's text tokens (never on
        vision pads), as the released Video-Thinker SFT script did.

    The answer's targets are its tokens and the closing `<|im_end|>`; the
    newline after it is input only.
    """
    pad = _PAD_OF[DataType(vision_kind)]
    pad_id = tokenizer.token_to_id(pad)
    rendered = render_prompt(system, user_text, vision_kind=None if vision_tokens is None else vision_kind)
    head, _, tail = rendered.partition(pad)
    ids = tokenizer.encode(head)
    if vision_tokens is not None:
        ids += [pad_id] * int(vision_tokens) + tokenizer.encode(tail)
    prompt_length = len(ids)
    mask = [include_prompt_in_loss] * prompt_length
    if answer is not None:
        target = tokenizer.encode(answer) + [tokenizer.token_to_id(tok_lib.IM_END)]
        trailer = tokenizer.encode("\n")
        ids += target + trailer
        mask += [True] * len(target) + [False] * len(trailer)
    input_ids = np.asarray(ids, np.int32)
    loss_mask = np.asarray(mask, bool) & (input_ids != pad_id)
    return EncodedChat(input_ids=input_ids, loss_mask=loss_mask, prompt_length=prompt_length)
