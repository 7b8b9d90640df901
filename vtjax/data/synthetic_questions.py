"""Questions about a synthetic scene, with their answers and ground-truth reasoning traces.

Each question kind is a function (scene, rng, distractors) -> Question, or
None when the scene cannot support it with exactly one right option. The
trace is a list of `<time>` / `<caption>` / `<think>` blocks over the
segments that decide the answer, then a sentence naming it.

Event times (whole seconds): an object *appears* at `start` (block
[start, start+1]), *disappears* at `end` (block [end-1, end]) and *moves* at
`move_start` (block [move_start, move_end]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from vtjax.data.synthetic_scene import COLOURS, REGIONS, SHAPES, Scene, SceneObject
from vtjax.text.grounding import format_time as mmss

NUM_OPTIONS = 4


@dataclasses.dataclass(frozen=True)
class Block:
    start: int
    end: int
    caption: str
    think: str

    def render(self) -> str:
        return (f"<time>{mmss(self.start)}-{mmss(self.end)}</time> <caption>{self.caption}</caption> "
                f"<think>{self.think}</think>")


@dataclasses.dataclass(frozen=True)
class Question:
    kind: str
    problem: str
    correct: str  # option text of the answer
    wrong: tuple[str, ...]  # NUM_OPTIONS - 1 option texts
    blocks: tuple[Block, ...]
    conclusion: str

    def trace(self) -> str:
        """The `process` field: blocks on their own lines, then the conclusion."""
        return "\n".join([b.render() for b in self.blocks] + [self.conclusion])


@dataclasses.dataclass(frozen=True)
class Event:
    time: int
    text: str  # "the red circle appears"
    span: tuple[int, int]  # trace block


def events(scene: Scene) -> list[Event]:
    """Every visible appear / move / disappear event, by time (staying until the video ends is no event)."""
    out = []
    for o in scene.objects:
        out.append(Event(o.start, f"the {o.name} appears", (o.start, o.start + 1)))
        if o.end < scene.duration:
            out.append(Event(o.end, f"the {o.name} disappears", (o.end - 1, o.end)))
        if o.move_to is not None:
            out.append(Event(o.move_start, f"the {o.name} moves to the {o.move_to}", (o.move_start, o.move_end)))
    return sorted(out, key=lambda e: e.time)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _object_wrong(scene: Scene, rng, distractors: int, exclude: Sequence[str]) -> tuple[str, ...]:
    """3 wrong object names: `distractors` of them from the video (when there are enough), the rest absent."""
    present = [o.name for o in scene.objects]
    pool = [n for n in present if n not in exclude]
    k = min(distractors, NUM_OPTIONS - 1, len(pool))
    chosen = [str(x) for x in rng.choice(pool, size=k, replace=False)] if k else []
    absent = [f"{c} {s}" for c in COLOURS for s in SHAPES if f"{c} {s}" not in present]
    chosen += [str(x) for x in rng.choice(absent, size=NUM_OPTIONS - 1 - k, replace=False)]
    return tuple(chosen)


def _number_wrong(answer: int, rng) -> tuple[str, ...]:
    """The other numbers of a window of 4 consecutive counts (>= 1) holding the answer at a random place."""
    low = max(1, answer - int(rng.integers(NUM_OPTIONS)))
    return tuple(str(x) for x in range(low, low + NUM_OPTIONS) if x != answer)


def _a(name: str) -> str:
    return ("an " if name[0] in "aeiou" else "a ") + name


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def first_appear(scene: Scene, rng, distractors: int) -> Question | None:
    o = min(scene.objects, key=lambda x: x.start)
    block = Block(o.start, o.end, f"The {o.name} appears in the {o.region} at {mmss(o.start)}.",
                  "Nothing is on screen before it, so it is the first object to appear.")
    return Question("first_appear", "Which object appears first in the video?", o.name,
                    _object_wrong(scene, rng, distractors, [o.name]), (block,), f"The {o.name} appears first.")


def last_appear(scene: Scene, rng, distractors: int) -> Question | None:
    if len(scene.objects) < 2:
        return None
    o = max(scene.objects, key=lambda x: x.start)
    block = Block(o.start, o.end, f"The {o.name} appears in the {o.region} at {mmss(o.start)}.",
                  "No other object appears after it, so it is the last to appear.")
    return Question("last_appear", "Which object appears last in the video?", o.name,
                    _object_wrong(scene, rng, distractors, [o.name]), (block,), f"The {o.name} appears last.")


def appears_after(scene: Scene, rng, distractors: int) -> Question | None:
    cands = [x for x in scene.objects if any(y.start >= x.end for y in scene.objects)]
    if not cands:
        return None
    x = _pick(rng, cands)
    y = min((o for o in scene.objects if o.start >= x.end), key=lambda o: o.start)
    blocks = (
        Block(x.start, x.end, f"The {x.name} is on screen in the {x.region} until {mmss(x.end)}.",
              f"I need the first object that appears at or after {mmss(x.end)}."),
        Block(y.start, y.end, f"The {y.name} appears in the {y.region} at {mmss(y.start)}.",
              "No other object appears between the two moments, so this is the one."),
    )
    return Question("appears_after", f"Which object appears first after the {x.name} disappears?", y.name,
                    _object_wrong(scene, rng, distractors, [x.name, y.name]), blocks,
                    f"The {y.name} appears first after the {x.name} disappears.")


def _overlapping(scene: Scene, x: SceneObject, t0: int, t1: int) -> list[SceneObject]:
    return [o for o in scene.objects if o is not x and o.start < t1 and o.end > t0]


def visible_during_move(scene: Scene, rng, distractors: int) -> Question | None:
    cands = [x for x in scene.objects if x.move_to and len(_overlapping(scene, x, x.move_start, x.move_end)) == 1]
    if not cands:
        return None
    x = _pick(rng, cands)
    (y,) = _overlapping(scene, x, x.move_start, x.move_end)
    block = Block(x.move_start, x.move_end,
                  f"The {x.name} moves from the {x.region} to the {x.move_to} while the {y.name} is on screen.",
                  f"The {y.name} is the only other object visible during the move.")
    return Question("visible_during_move", f"Which object is on screen while the {x.name} moves?", y.name,
                    _object_wrong(scene, rng, distractors, [x.name, y.name]), (block,),
                    f"The {y.name} is on screen while the {x.name} moves.")


def count_total(scene: Scene, rng, distractors: int) -> Question | None:
    del distractors
    blocks = tuple(
        Block(o.start, o.end, f"{_cap(_a(o.name))} is on screen in the {o.region}.",
              f"That makes {k} object{'s' if k > 1 else ''} so far.")
        for k, o in enumerate(sorted(scene.objects, key=lambda o: o.start), start=1)
    )
    n = len(scene.objects)
    return Question("count_total", "How many objects appear in the video?", str(n), _number_wrong(n, rng),
                    blocks, f"{n} object{'s' if n > 1 else ''} appear{'' if n > 1 else 's'} in total.")


def count_at_appear(scene: Scene, rng, distractors: int) -> Question | None:
    del distractors
    x = _pick(rng, scene.objects)
    others = [o.name for o in scene.objects if o is not x and o.start <= x.start < o.end]
    k = len(others) + 1
    if others:
        seen = " and ".join(f"the {n}" for n in others)
        caption = f"The {x.name} appears in the {x.region} while {seen} {'is' if k == 2 else 'are'} on screen."
    else:
        caption = f"The {x.name} appears in the {x.region} and nothing else is on screen."
    block = Block(x.start, x.start + 1, caption, f"Counting the {x.name}, {k} object{'s' if k > 1 else ''} "
                  f"{'are' if k > 1 else 'is'} visible.")
    return Question("count_at_appear", f"How many objects are on screen right after the {x.name} appears?",
                    str(k), _number_wrong(k, rng), (block,),
                    f"{k} object{'s are' if k > 1 else ' is'} on screen then.")


def _move_block(o: SceneObject) -> Block:
    return Block(o.move_start, o.move_end, f"The {o.name} moves from the {o.region} to the {o.move_to}.",
                 f"It ends in the {o.move_to}.")


def move_where(scene: Scene, rng, distractors: int) -> Question | None:
    del distractors
    movers = [o for o in scene.objects if o.move_to]
    if not movers:
        return None
    x = _pick(rng, movers)
    wrong = tuple(r for r in REGIONS if r != x.move_to)
    return Question("move_where", f"Where does the {x.name} move to?", x.move_to, wrong, (_move_block(x),),
                    f"The {x.name} moves to the {x.move_to}.")


def which_moved(scene: Scene, rng, distractors: int) -> Question | None:
    targets = [r for r in REGIONS if sum(o.move_to == r for o in scene.objects) == 1]
    if not targets:
        return None
    region = _pick(rng, targets)
    (x,) = [o for o in scene.objects if o.move_to == region]
    return Question("which_moved", f"Which object moves to the {region}?", x.name,
                    _object_wrong(scene, rng, distractors, [x.name]), (_move_block(x),),
                    f"The {x.name} moves to the {region}.")


def _by_time(evs: Sequence[Event]) -> dict[int, list[Event]]:
    out: dict[int, list[Event]] = {}
    for e in evs:
        out.setdefault(e.time, []).append(e)
    return out


def first_event(scene: Scene, rng, distractors: int) -> Question | None:
    del distractors
    by_time = _by_time(events(scene))
    if len(by_time) < NUM_OPTIONS:
        return None
    times = sorted(int(t) for t in rng.choice(sorted(by_time), size=NUM_OPTIONS, replace=False))
    chosen = [_pick(rng, by_time[t]) for t in times]  # one event per time, earliest first
    first, second = chosen[0], chosen[1]
    blocks = (
        Block(*first.span, f"{_cap(first.text)} at {mmss(first.time)}.", "This is the earliest of the four events."),
        Block(*second.span, f"{_cap(second.text)} at {mmss(second.time)}.",
              f"This comes later than {mmss(first.time)}."),
    )
    return Question("first_event", "Which of these happens first?", first.text,
                    tuple(e.text for e in chosen[1:]), blocks, f"{_cap(first.text)} first.")


def next_event(scene: Scene, rng, distractors: int) -> Question | None:
    del distractors
    evs = events(scene)
    cands = []
    for o in scene.objects:
        later = sorted({e.time for e in evs if e.time > o.start})
        if later and len([e for e in evs if e.time == later[0]]) == 1:
            cands.append((o, later[0]))
    if not cands:
        return None
    x, t = _pick(rng, cands)
    (answer,) = [e for e in evs if e.time == t]
    pool = [e.text for e in evs if e.time != t and e.text != f"the {x.name} appears"]
    if len(pool) < NUM_OPTIONS - 1:
        return None
    wrong = tuple(str(w) for w in rng.choice(pool, size=NUM_OPTIONS - 1, replace=False))
    blocks = (
        Block(x.start, x.start + 1, f"The {x.name} appears in the {x.region} at {mmss(x.start)}.",
              f"I look for the first change after {mmss(x.start)}."),
        Block(*answer.span, f"{_cap(answer.text)} at {mmss(answer.time)}.", "Nothing else changes in between."),
    )
    return Question("next_event", f"What happens right after the {x.name} appears?", answer.text, wrong, blocks,
                    f"Right after that, {answer.text}.")


QUESTION_KINDS: dict[str, Callable[..., Question | None]] = {
    f.__name__: f
    for f in (first_appear, last_appear, appears_after, visible_during_move, count_total, count_at_appear,
              move_where, which_moved, first_event, next_event)
}


def ask(scene: Scene, rng: np.random.Generator, kind: str, distractors: int) -> Question | None:
    """A question of `kind` about `scene`, or None if the scene does not support one."""
    return QUESTION_KINDS[kind](scene, rng, distractors)
