"""Scenes of the synthetic task: coloured shapes on a plain background, their timeline, frames and mp4.

A scene lasts `duration` whole seconds. Each object is visible on
[start, end) (whole seconds, all starts distinct, all ends distinct), sits at
the centre of one quadrant and may move, once, to another quadrant over
[move_start, move_end). Quadrants are reserved so no two objects that are on
screen at the same time share one (a mover reserves both of its quadrants for
its whole life): objects never overlap, so every colour is visible whenever
its object is on screen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

COLOURS = {  # name -> RGB, far apart so they survive yuv420p compression
    "red": (230, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 80, 245),
    "yellow": (245, 225, 30),
    "purple": (160, 40, 220),
    "cyan": (40, 225, 235),
    "orange": (250, 140, 10),
    "white": (245, 245, 245),
}
BACKGROUND = (25, 25, 25)
SHAPES = ("circle", "square", "triangle")
REGIONS = ("top left", "top right", "bottom left", "bottom right")
CENTRES = {"top left": (0.25, 0.25), "top right": (0.75, 0.25), "bottom left": (0.25, 0.75), "bottom right": (0.75, 0.75)}
HALF_SIZE = 0.1  # default object half-width as a fraction of the frame side (a quadrant is 0.5 wide)


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One object's whole life on screen (times in whole seconds)."""

    colour: str
    shape: str
    start: int  # first visible at `start`
    end: int  # gone from `end` on
    region: str  # quadrant where it appears
    move_to: str | None = None  # quadrant it moves to, if it moves
    move_start: int | None = None
    move_end: int | None = None

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def visible(self, t: float) -> bool:
        return self.start <= t < self.end

    def centre(self, t: float) -> tuple[float, float]:
        """(x, y) as fractions of the frame side at time t."""
        x0, y0 = CENTRES[self.region]
        if self.move_to is None or t < self.move_start:
            return x0, y0
        x1, y1 = CENTRES[self.move_to]
        a = min(1.0, (t - self.move_start) / (self.move_end - self.move_start))
        return x0 + a * (x1 - x0), y0 + a * (y1 - y0)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Scene:
    duration: int  # seconds
    objects: tuple[SceneObject, ...]  # in order of appearance

    def to_json(self) -> dict:
        return {"duration": self.duration, "objects": [o.to_json() for o in self.objects]}

    @classmethod
    def from_json(cls, d: dict) -> Scene:
        return cls(d["duration"], tuple(SceneObject(**o) for o in d["objects"]))


def _distinct_ends(rng: np.random.Generator, starts: Sequence[int], duration: int) -> list[int] | None:
    ends, used = [], set()
    for s in starts:
        choices = [e for e in range(s + 2, duration + 1) if e not in used]
        if not choices:
            return None
        e = int(rng.choice(choices))
        ends.append(e)
        used.add(e)
    return ends


def palette(size: int) -> tuple[str, ...]:
    """The first ``size`` colour names of COLOURS: the colours a dataset draws its objects from."""
    if not 1 <= size <= len(COLOURS):
        raise ValueError(f"a palette holds 1 to {len(COLOURS)} colours, got {size}.")
    return tuple(COLOURS)[:size]


def random_scene(
    rng: np.random.Generator, *, num_objects: int, duration: int, move_prob: float,
    colours: Sequence[str] = tuple(COLOURS), max_tries: int = 50
) -> Scene:
    """A random scene with `num_objects` objects (fewer if they cannot fit after `max_tries`)."""
    if duration < 3:
        raise ValueError(f"duration={duration} s is too short; scenes need at least 3 s.")
    for attempt in range(max_tries * 2):
        n = num_objects if attempt < max_tries else max(1, num_objects - 1 - (attempt - max_tries) // 10)
        n = min(n, duration - 1, len(colours))
        starts = sorted(int(s) for s in rng.choice(duration - 1, size=n, replace=False))
        ends = _distinct_ends(rng, starts, duration)
        if ends is None:
            continue
        chosen = [str(c) for c in rng.choice(list(colours), size=n, replace=False)]
        objects, placed = [], []  # placed: (start, end, {quadrants})
        for s, e, colour in zip(starts, ends, chosen, strict=True):
            busy = set().union(*[q for (s2, e2, q) in placed if s2 < e and s < e2])
            free = [r for r in REGIONS if r not in busy]
            if not free:
                break
            region = str(rng.choice(free))
            shape = str(rng.choice(SHAPES))
            move = None
            targets = [r for r in free if r != region]
            if e - s >= 3 and targets and rng.random() < move_prob:
                m0 = int(rng.integers(s + 1, e - 1))
                m1 = int(rng.integers(m0 + 1, min(m0 + 2, e - 1) + 1))
                move = (str(rng.choice(targets)), m0, m1)
            quads = {region} | ({move[0]} if move else set())
            placed.append((s, e, quads))
            objects.append(SceneObject(colour, shape, s, e, region, *(move or (None, None, None))))
        else:
            return Scene(duration, tuple(objects))
    raise RuntimeError(f"could not place {num_objects} objects in a {duration} s scene; lower num_objects.")


def sequential_scene(
    rng: np.random.Generator, *, num_objects: int, duration: int, colours: Sequence[str] = tuple(COLOURS)
) -> Scene:
    """Objects take turns: object k alone on screen over [b_k, b_k+1), b_k = round(k * duration / n) s.

    Each has its own colour and a random shape and quadrant, and does not move:
    the order of appearance is the whole story.
    """
    n = min(num_objects, len(colours))
    if duration < n:
        raise ValueError(f"duration={duration} s is too short for {n} objects taking turns (1 s each at least).")
    bounds = [round(k * duration / n) for k in range(n + 1)]
    chosen = [str(c) for c in rng.choice(list(colours), size=n, replace=False)]
    objects = tuple(SceneObject(colour, str(rng.choice(SHAPES)), bounds[k], bounds[k + 1], str(rng.choice(REGIONS)))
                    for k, colour in enumerate(chosen))
    return Scene(duration, objects)


def _shape_mask(shape: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, h: float) -> np.ndarray:
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= h * h
    if shape == "square":
        return (np.abs(dx) <= 0.85 * h) & (np.abs(dy) <= 0.85 * h)
    if shape == "triangle":  # apex up
        return (dy >= -h) & (dy <= h) & (np.abs(dx) <= (dy + h) / 2)
    raise ValueError(f"unknown shape {shape!r}; use one of {SHAPES}.")


def render_frames(scene: Scene, fps: int, size: int, half_size: float = HALF_SIZE) -> np.ndarray:
    """uint8 [duration * fps, size, size, 3]: frame i shows the scene at time i / fps.

    ``half_size`` is an object's half-width as a fraction of the side; up to 0.1
    a moving object never touches another one, larger objects may brush past
    others while moving diagonally (later objects are drawn on top).
    """
    n = scene.duration * fps
    frames = np.empty((n, size, size, 3), np.uint8)  # [T, H, W, 3]
    for ch, v in enumerate(BACKGROUND):  # per channel: numpy broadcasts a 3-vector slowly
        frames[..., ch] = v
    h = half_size * size
    for i in range(n):
        t = i / fps
        for obj in scene.objects:
            if not obj.visible(t):
                continue
            cx, cy = (c * size for c in obj.centre(t))
            x0, x1 = max(0, int(cx - h) - 1), min(size, int(cx + h) + 2)  # bounding box, pixels
            y0, y1 = max(0, int(cy - h) - 1), min(size, int(cy + h) + 2)
            ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5  # pixel centres
            xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
            mask = _shape_mask(obj.shape, xs, ys, cx, cy, h)  # [y1 - y0, x1 - x0]
            patch = frames[i, y0:y1, x0:x1]  # a view
            for ch, v in enumerate(COLOURS[obj.colour]):
                patch[..., ch][mask] = v
    return frames


def write_mp4(path: str, frames: np.ndarray, fps: int, crf: int = 12) -> None:
    """Encodes uint8 [T, H, W, 3] frames as H.264 (yuv420p, single-threaded, so the bytes are reproducible)."""
    import av  # pylint: disable=import-outside-toplevel

    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
