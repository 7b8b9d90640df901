"""``mode=generate``: one video and one question in, the model's reasoning trace and answer out.

  python -m vtjax.main --config configs/tiny_generate.py --workdir /tmp/ask \\
      --config.model.init_from=CKPT --config.generate.video=clip.mp4 \\
      --config.generate.question="Which object appears first?" \\
      --config.generate.options="A. the red circle|B. the blue square|C. the green triangle|D. the white circle"

The video goes through the same sampling and preprocessing as evaluation
(``data.nframes`` frames at <= ``data.max_pixels``), the question through the
configured prompts, and the answer through the compiled sampler. The trace
is printed block by block (``<time>`` / ``<caption>`` / ``<think>`` on their
own lines, then ``<answer>``) and written to ``workdir/answer.json``. The
reported answer is an option letter when the question has options, else the
text of the last ``<answer>`` (``answer_of``).
"""

from __future__ import annotations

import json
import logging
import os
import re

from vtjax.eval import inference
from vtjax.text import answers, grounding
from vtjax.eval.config import validate_generate
from vtjax.rl import rewards

log = logging.getLogger("vtjax.generate")
_BLOCK_START = re.compile(r"\s*(<time>|<answer>)")


def layout_trace(text: str) -> str:
    """The answer text with each ``<time>`` block and the ``<answer>`` starting a new line."""
    return _BLOCK_START.sub(r"\n\1", text).strip()


def answer_of(text: str, options=()) -> str | None:
    """The answer an output gives: an option letter (``answers.extract_answer``) when there are ``options``;
    for an open question the non-blank text of the last ``<answer>``; else None."""
    if options:
        return answers.extract_answer(text, num_options=len(options))
    content = answers.last_answer(text)
    return content or None


def ask(model: inference.InferenceModel, video: str, question: str, options=(), *,
        decoding: inference.Decoding = inference.Decoding(), num_samples: int = 1) -> list[dict]:
    """``num_samples`` answers to one question about ``video``: text, answer (``answer_of``), segments, format."""
    batch = inference.prompt_batch(model, video, question, options)
    texts = inference.generate_texts(model, batch, decoding, num_samples=num_samples)
    return [{"text": t, "answer": answer_of(t, options), "segments": grounding.parse_time_segments(t),
             "format_ok": rewards.format_reward(t) == 1.0} for t in texts]


def parse_options(value: str) -> list[str]:
    """``"A. red|B. blue"`` -> ["A. red", "B. blue"]; unlettered options are lettered A, B, ... in order."""
    items = [o.strip() for o in value.split("|") if o.strip()]
    lettered = all(re.match(r"^[A-Z][.:)]", o) for o in items)
    return items if lettered else [f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(items)]


def run(config, workdir: str) -> dict:
    """Answers ``config.generate``'s question; prints the trace; returns {source, question, answers}."""
    validate_generate(config)
    g = config.generate
    model = inference.load_model(config)
    options = parse_options(g.options)
    decoding = inference.Decoding(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                                  top_k=g.top_k, seed=config.seed)
    results = ask(model, g.video, g.question, options, decoding=decoding, num_samples=g.num_samples)
    print(f"model: {model.source}\nvideo: {g.video}\nquestion: {g.question}")
    for o in options:
        print(f"  {o}")
    for i, r in enumerate(results):
        header = f"--- answer {i + 1} of {len(results)}" if len(results) > 1 else "---"
        given = f"letter: {r['answer']}" if options else f"answer: {r['answer']!r}" if r["answer"] else "no answer"
        print(f"{header} ({given}, format {'ok' if r['format_ok'] else 'broken'})")
        print(layout_trace(r["text"]))
    out = {"source": model.source, "video": g.video, "question": g.question, "options": options, "answers": results}
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "answer.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    return out
