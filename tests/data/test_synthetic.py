"""Synthetic task: determinism, answers re-derived by independent rules, videos checked by colour, tokenizer."""

import dataclasses
import itertools
import json
import os
import re

import av
import numpy as np
import pytest

from vtjax.data import records as records_lib
from vtjax.data import synthetic
from vtjax.data import tokenizer as tok_lib
from vtjax.text import grounding
from vtjax.rl import rewards

TINY = synthetic.SyntheticConfig(seed=3, num_train=10, num_test=4, vocab_size=400)
PALETTE = {  # independent copy of the colours the generator promises
    "red": (230, 30, 30), "green": (30, 190, 50), "blue": (40, 80, 245), "yellow": (245, 225, 30),
    "purple": (160, 40, 220), "cyan": (40, 225, 235), "orange": (250, 140, 10), "white": (245, 245, 245),
}
QUADRANT = {(0, 0): "top left", (1, 0): "top right", (0, 1): "bottom left", (1, 1): "bottom right"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synthetic.write_dataset(tmp_path_factory.mktemp("syn"), TINY, extra_texts=["System prompt {question}"])


@pytest.fixture(scope="module")
def many_records():
    cfg = dataclasses.replace(TINY, num_train=400)
    return synthetic.generate_records(cfg, "train")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------ independent answer rules


def _events(scene):
    """(time, text) of every observable event, written from the task description."""
    out = []
    for o in scene["objects"]:
        name = f"{o['colour']} {o['shape']}"
        out.append((o["start"], f"the {name} appears"))
        if o["end"] < scene["duration"]:
            out.append((o["end"], f"the {name} disappears"))
        if o["move_to"]:
            out.append((o["move_start"], f"the {name} moves to the {o['move_to']}"))
    return out


def _expected_answer(r):
    """The right option text, from the question wording and the scene alone."""
    scene, q = r["scene"], r["problem"]
    objs = {f"{o['colour']} {o['shape']}": o for o in scene["objects"]}
    ref = re.search(r"the (\w+ \w+) (?:disappears|moves|appears|move to)\?", q)
    x = objs[ref.group(1)] if ref else None
    if q == "Which object appears first in the video?":
        return min(objs, key=lambda n: objs[n]["start"])
    if q == "Which object appears last in the video?":
        return max(objs, key=lambda n: objs[n]["start"])
    if q.startswith("Which object appears first after"):
        later = [n for n, o in objs.items() if o["start"] >= x["end"]]
        return min(later, key=lambda n: objs[n]["start"])
    if q.startswith("Which object is on screen while"):
        (y,) = [n for n, o in objs.items() if o is not x and o["start"] < x["move_end"] and o["end"] > x["move_start"]]
        return y
    if q == "How many objects appear in the video?":
        return str(len(objs))
    if q.startswith("How many objects are on screen right after"):
        return str(sum(o["start"] <= x["start"] < o["end"] for o in objs.values()))
    if q.startswith("Where does"):
        return x["move_to"]
    if m := re.match(r"Which object moves to the (.+)\?", q):
        (y,) = [n for n, o in objs.items() if o["move_to"] == m.group(1)]
        return y
    times = dict((text, t) for t, text in _events(scene))
    opts = [o[3:] for o in r["options"]]
    if q == "Which of these happens first?":
        assert len({times[o] for o in opts}) == 4  # every option is a real event, at distinct times
        return min(opts, key=lambda o: times[o])
    if q.startswith("What happens right after"):
        t_next = min(t for t, _ in _events(scene) if t > x["start"])
        (ans,) = [text for t, text in _events(scene) if t == t_next]
        return ans
    raise AssertionError(f"unknown question {q!r}")


def test_every_answer_matches_an_independent_rule(many_records):
    kinds = set()
    for r in many_records:
        letter = re.fullmatch(r"<answer>([ABCD])</answer>", r["solution"]).group(1)
        texts = {o[0]: o[3:] for o in r["options"]}
        assert [o[:3] for o in r["options"]] == ["A. ", "B. ", "C. ", "D. "]
        assert len(set(texts.values())) == 4, r["options"]
        want = _expected_answer(r)
        assert texts[letter] == want, (r["id"], r["problem"], r["options"], want)
        kinds.add(r["question_type"])
    assert kinds == set(synthetic.questions.QUESTION_KINDS)
    letters = [r["solution"][8] for r in many_records]
    assert min(letters.count(c) for c in "ABCD") > 60  # answers spread over the letters


def test_traces_follow_the_format_and_segments(many_records):
    for r in many_records:
        assert rewards.format_reward(r["process"] + "\n" + r["solution"]) == 1.0, r["process"]
        assert [list(s) for s in grounding.parse_time_segments(r["process"])] == r["segments"]
        assert all(0 <= s <= e <= r["scene"]["duration"] for s, e in r["segments"])


def test_distractors_knob(many_records):
    hard = synthetic.generate_records(dataclasses.replace(TINY, num_train=60, distractors=3, min_objects=4), "train")
    easy = synthetic.generate_records(dataclasses.replace(TINY, num_train=60, distractors=0), "train")
    object_kinds = {"first_appear", "last_appear", "which_moved"}
    for recs, want_in_video in ((hard, True), (easy, False)):
        checked = 0
        for r in recs:
            if r["question_type"] not in object_kinds or len(r["scene"]["objects"]) < 4:
                continue
            names = {f"{o['colour']} {o['shape']}" for o in r["scene"]["objects"]}
            wrong = [o[3:] for o in r["options"] if o[0] != r["solution"][8]]
            assert all((w in names) == want_in_video for w in wrong), r
            checked += 1
        assert checked >= 3


def test_records_are_deterministic_and_per_index(many_records):
    again = synthetic.generate_records(dataclasses.replace(TINY, num_train=400), "train")
    assert again == many_records
    assert synthetic.make_record(TINY, "train", 7) == many_records[7]  # independent of the others
    other = synthetic.generate_records(dataclasses.replace(TINY, seed=4, num_train=20), "train")
    assert other != many_records[:20]
    assert synthetic.make_record(TINY, "test", 0)["scene"] != many_records[0]["scene"]


# ------------------------------------------------------------ written dataset


def _decode(path):
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _visible_colours(frame):
    """{colour: (x, y) centroid as fractions} of the palette colours with enough pixels."""
    out = {}
    px = frame.reshape(-1, 3).astype(np.int32)
    for name, rgb in PALETTE.items():
        hit = np.abs(px - np.asarray(rgb)).max(-1) <= 40
        if hit.sum() >= 40:
            ys, xs = np.divmod(np.flatnonzero(hit), frame.shape[1])
            out[name] = (xs.mean() / frame.shape[1], ys.mean() / frame.shape[0])
    return out


def test_videos_show_the_scene(dataset):
    for r in _read(dataset.train_path)[:6] + _read(dataset.test_path)[:2]:
        frames = _decode(os.path.join(dataset.video_root, r["path"]))
        scene = r["scene"]
        assert frames.shape == (scene["duration"] * TINY.fps, TINY.size, TINY.size, 3)
        for i, frame in enumerate(frames):
            t = i / TINY.fps
            seen = _visible_colours(frame)
            on = {o["colour"]: o for o in scene["objects"] if o["start"] <= t < o["end"]}
            assert set(seen) == set(on), (r["id"], t, seen, list(on))
            for colour, o in on.items():
                if o["move_to"] and t >= o["move_start"]:
                    if t < o["move_end"]:
                        continue  # in transit
                    region = o["move_to"]
                else:
                    region = o["region"]
                x, y = seen[colour]
                assert QUADRANT[(int(x >= 0.5), int(y >= 0.5))] == region, (r["id"], t, colour)


def test_dataset_files_load_through_the_pipeline(dataset):
    recs, problems = records_lib.load_records(
        [dataset.train_path, dataset.test_path], dataset.video_root, require_process=True
    )
    assert not problems and len(recs) == TINY.num_train + TINY.num_test
    assert recs[0].uid == "synthetic-train-000000" and os.path.isfile(recs[0].video_path)
    assert recs[0].sft_target.endswith(recs[0].solution)


def test_written_dataset_is_byte_identical_and_cached(dataset, tmp_path):
    again = synthetic.write_dataset(tmp_path, TINY, extra_texts=["System prompt {question}"])
    assert os.path.basename(again.root) == os.path.basename(dataset.root)
    for rel in ("train.jsonl", "test.jsonl", "tokenizer.model", "videos/train/000003.mp4"):
        with open(os.path.join(dataset.root, rel), "rb") as a, open(os.path.join(again.root, rel), "rb") as b:
            assert a.read() == b.read(), rel
    stamp = os.path.getmtime(again.train_path)
    assert synthetic.write_dataset(tmp_path, TINY, extra_texts=["System prompt {question}"]) == again
    assert os.path.getmtime(again.train_path) == stamp  # reused, not rewritten
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(again.root)]  # no temporary left behind
    changed = dataclasses.replace(TINY, num_test=3)
    assert changed.fingerprint(["System prompt {question}"]) != TINY.fingerprint(["System prompt {question}"])


def test_tokenizer_round_trips_with_single_id_specials(dataset):
    tok = tok_lib.load_tokenizer(dataset.tokenizer_path)
    assert isinstance(tok, tok_lib.SentencePieceTokenizer) and tok.vocab_size <= TINY.vocab_size
    ids = [tok.encode(t) for t in tok_lib.SPECIAL_TOKENS + synthetic.REASONING_TAGS]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(ids)
    assert all(tok.special_ids[t] < tok.vocab_size for t in tok_lib.SPECIAL_TOKENS)  # in the model, not appended
    r = _read(dataset.test_path)[0]
    text = (f"<|im_start|>system\nSystem prompt<|im_end|>\n<|im_start|>user\n<|vision_start|><|video_pad|>"
            f"<|vision_end|>{r['problem']}\nOptions:\n" + "\n".join(r["options"])
            + f"<|im_end|>\n<|im_start|>assistant\n{r['process']}\n{r['solution']}<|im_end|>\n")
    for s in (text, "unseen: é€ 漢字  two  spaces\ttab", r["process"]):
        assert tok.decode(tok.encode(s)) == s
    assert len(tok.encode(r["process"])) < len(r["process"]) / 2  # it learned merges of the task's words


TURNS = dataclasses.replace(TINY, num_train=80, min_objects=4, max_objects=4, distractors=3, colours=4,
                            sequential=True, option_order="palette", min_duration_s=4, max_duration_s=7,
                            question_kinds=("first_appear", "last_appear", "count_total"))


def test_sequential_scenes_take_turns_in_a_palette():
    recs = synthetic.generate_records(TURNS, "train")
    for r in recs:
        objs, d = r["scene"]["objects"], r["scene"]["duration"]
        assert {o["colour"] for o in objs} == {"red", "green", "blue", "yellow"}  # the first 4 colours, each once
        spans = sorted((o["start"], o["end"]) for o in objs)
        assert spans[0][0] == 0 and spans[-1][1] == d  # the screen is never empty ...
        assert all(a[1] == b[0] and b[1] - b[0] >= 1 for a, b in itertools.pairwise(spans))  # ... nor shared
        assert all(o["move_to"] is None for o in objs)
        want = _expected_answer(r)  # the independent rules still hold
        assert dict((o[0], o[3:]) for o in r["options"])[r["solution"][8]] == want


def test_palette_option_order_fixes_what_a_letter_means():
    recs = synthetic.generate_records(TURNS, "train")
    colour_of = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}
    for r in recs:
        texts = [o[3:] for o in r["options"]]
        if r["question_type"] == "count_total":
            assert texts == sorted(texts, key=int)
        else:
            assert [t.split()[0] for t in texts] == list(colour_of.values())
            assert _expected_answer(r).split()[0] == colour_of[r["solution"][8]]
    letters = [r["solution"][8] for r in recs if r["question_type"] != "count_total"]
    assert len(set(letters)) == 4  # every letter is used: the answer still depends on the video


def test_object_size_knob_scales_the_drawn_shapes():
    scene = synthetic.scene_lib.Scene(4, (synthetic.scene_lib.SceneObject("red", "square", 0, 4, "top left"),))
    for half in (0.1, 0.2):
        frame = synthetic.scene_lib.render_frames(scene, fps=1, size=112, half_size=half)[0]
        red = (np.abs(frame.astype(int) - PALETTE["red"]).max(-1) <= 40).sum()
        side = 2 * 0.85 * half * 112  # a square's side is 1.7 half-widths
        assert abs(red - side * side) <= 4 * side, (half, red)


def test_config_errors():
    with pytest.raises(ValueError, match="question_kinds"):
        synthetic.SyntheticConfig(question_kinds=("colour_of_sky",))
    with pytest.raises(ValueError, match="min_objects"):
        synthetic.SyntheticConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="min_duration_s"):
        synthetic.SyntheticConfig(min_duration_s=2)
    with pytest.raises(ValueError, match="colours"):
        synthetic.SyntheticConfig(colours=3, max_objects=4)
    with pytest.raises(ValueError, match="sequential"):
        synthetic.SyntheticConfig(sequential=True, min_duration_s=3, max_objects=4)
    with pytest.raises(ValueError, match="option_order"):
        synthetic.SyntheticConfig(option_order="alphabetical")
    with pytest.raises(ValueError, match="object_size"):
        synthetic.SyntheticConfig(object_size=0.3)
    with pytest.raises(ValueError, match="split="):
        synthetic.generate_records(TINY, "val")
