"""grain pipelines: bad inputs skipped and counted, exact resume, sharding, the three modes."""

import json
import logging
import os

import numpy as np
import pytest

from vtjax.data import chat, examples, pipeline, records
from vtjax.data import tokenizer as tok_lib

from .conftest import write_video

VIDEO = examples.VideoOptions(nframes=4, min_pixels=28 * 28, max_pixels=56 * 84, backend="pyav")
NUM_GOOD = 10
BAD_VIDEOS = ["missing.mp4", "empty.mp4", "truncated.mp4", "garbage.mp4", "two_frames.mp4"]


def _record(i, path, **overrides):
    r = {
        "problem": f"What happens in clip {i}?",
        "problem_type": "multiple choice",
        "options": ["A. a bar moves", "B. nothing"],
        "data_type": "video",
        "path": path,
        "data_source": "synthetic",
        "process": f"<think>clip {i}</think>",
        "solution": "<answer>A</answer>",
    }
    r.update(overrides)
    return r


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    for i in range(NUM_GOOD):
        write_video(root / f"good{i}.mp4", frames=8 + 2 * i, fps=8, width=56 + 28 * (i % 2), height=56)
    data = open(root / "good0.mp4", "rb").read()
    (root / "empty.mp4").write_bytes(b"")
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "garbage.mp4").write_bytes(os.urandom(3000))
    write_video(root / "two_frames.mp4", frames=2, fps=8)
    good = [_record(i, f"good{i}.mp4", id=f"g{i}") for i in range(NUM_GOOD)]
    bad_videos = [_record(100 + j, name, id=f"bad_{name}") for j, name in enumerate(BAD_VIDEOS)]
    bad_records = [
        _record(200, "good0.mp4", solution="<answer>D</answer>"),  # letter not among options
        {k: v for k, v in _record(201, "good0.mp4").items() if k != "problem"},  # missing field
        _record(202, "../outside.mp4"),  # escapes the root
    ]
    rows = good[:5] + bad_videos[:3] + bad_records + good[5:] + bad_videos[3:]
    path = root / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"root": str(root), "file": str(path)}


@pytest.fixture(scope="module")
def tok(tokenizer_json):
    return tok_lib.load_tokenizer(tokenizer_json)


PROMPTS = chat.Prompts(system="You are a helpful assistant.", question_template="{question}\nAnswer with one letter.")


def _load(dataset):
    return records.load_records(dataset["file"], dataset["root"])


def _sft(recs, tok, **cfg):
    config = pipeline.PipelineConfig(**{"batch_size": 2, "max_bad_fraction": 0.5, **cfg})
    return pipeline.sft_pipeline(recs, tok, PROMPTS, config, video=VIDEO, process_index=0, process_count=1)


def _ids(batches):
    return [rid for b in batches for rid, ok in zip(b["record_id"], b["example_mask"], strict=True) if ok]


def test_sft_over_mixed_good_and_bad_inputs(dataset, tok, caplog):
    recs, problems = _load(dataset)
    assert len(problems) == 3  # letter, missing field, escaping path
    pipeline.check_record_problems(problems, len(recs) + len(problems), max_bad_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="vtjax.data.pipeline"):
        it = iter(_sft(recs, tok, shuffle=False))
        batches = list(it)
    assert sorted(_ids(batches)) == sorted(f"g{i}" for i in range(NUM_GOOD))
    assert it.stats["seen"] == NUM_GOOD + len(BAD_VIDEOS) and it.stats["skipped"] == len(BAD_VIDEOS)
    for name in BAD_VIDEOS:  # each skipped video is logged with its path
        assert os.path.join(dataset["root"], name) in caplog.text
    b = batches[0]
    assert b["input_ids"].shape == b["labels"].shape == b["loss_mask"].shape
    assert b["input_ids"].shape[1] in (64, 96, 128, 192, 256)
    answer = tok.decode(b["input_ids"][0][b["loss_mask"][0]])
    assert answer == "<think>clip 0</think>\n<answer>A</answer><|im_end|>"
    rows = int(np.prod(b["grid_thw"], axis=1).sum())
    assert (b["input_ids"] == tok.token_to_id(tok_lib.VIDEO_PAD)).sum() == rows // 4
    assert b["vision_rows"].shape[0] >= rows and not b["vision_rows"][rows:].any()


def test_too_many_bad_inputs_stop_the_run_with_a_summary(dataset, tok):
    recs, problems = _load(dataset)
    with pytest.raises(pipeline.BadDataError, match="record validation: 3 of 18") as info:
        pipeline.check_record_problems(problems, len(recs) + len(problems), max_bad_fraction=0.1)
    assert "escapes the video root" in str(info.value) and "train.jsonl:" in str(info.value)
    it = iter(_sft(recs, tok, shuffle=False, max_bad_fraction=0.1, min_examples_for_budget=1))
    with pytest.raises(pipeline.BadDataError, match="more than max_bad_fraction=0.1") as info:
        list(it)
    assert "missing.mp4" in str(info.value) and "file not found" in str(info.value)


def _run(ds, n=None):
    it = iter(ds)
    out = []
    for b in it:
        out.append(b)
        if n is not None and len(out) == n:
            break
    return it, out


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], np.ndarray):
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)
            else:
                assert x[k] == y[k], k


def test_resume_yields_exactly_the_next_batches(dataset, tok):
    recs, _ = _load(dataset)
    kwargs = dict(seed=3, num_epochs=2)
    _, full = _run(_sft(recs, tok, **kwargs))
    assert len(full) == 10  # 2 epochs x 15 valid records, 5 unreadable videos each: 20 good -> 10 batches
    it, head = _run(_sft(recs, tok, **kwargs), 6)
    state = json.loads(json.dumps(it.get_state()))  # checkpoints store it as JSON
    resumed = iter(_sft(recs, tok, **kwargs))
    resumed.set_state(state)
    _assert_same(head + list(resumed), full)
    assert resumed.stats["seen"] == 30


def test_resume_with_worker_processes(dataset, tok):
    recs, _ = _load(dataset)
    _, inline = _run(_sft(recs, tok, seed=1))
    it, head = _run(_sft(recs, tok, seed=1, worker_count=2), 2)
    state = it.get_state()
    it.close()
    resumed = iter(_sft(recs, tok, seed=1, worker_count=2))
    resumed.set_state(state)
    rest = list(resumed)
    resumed.close()
    # Decoding in two worker processes, interrupted and resumed, gives the batches of an
    # uninterrupted single-process run: batches never depend on the number of workers.
    _assert_same(head + rest, inline)


def test_shuffle_is_seeded_and_processes_get_disjoint_shares(dataset, tok):
    recs, _ = _load(dataset)
    good = sorted(r.uid for r in recs if r.uid.startswith("g"))
    order = lambda seed: _ids(_run(_sft(recs, tok, seed=seed))[1])  # noqa: E731
    assert order(5) == order(5) and order(5) != order(6) and sorted(order(5)) == good
    config = pipeline.PipelineConfig(batch_size=1, seed=5, max_bad_fraction=0.5)
    shares = [
        _ids(_run(pipeline.sft_pipeline(recs, tok, PROMPTS, config, video=VIDEO, process_index=p, process_count=2))[1])
        for p in range(2)
    ]
    assert not set(shares[0]) & set(shares[1]) and sorted(shares[0] + shares[1]) == good


def test_grpo_batches_carry_prompts_and_ground_truth(dataset, tok):
    recs, _ = _load(dataset)
    config = pipeline.PipelineConfig(batch_size=3, max_bad_fraction=0.5, padding_side="left")
    b = next(iter(pipeline.grpo_pipeline(recs, tok, PROMPTS, config, video=VIDEO, process_index=0, process_count=1)))
    assert "labels" not in b and b["answer"] == ["A"] * 3 and b["solution"] == ["<answer>A</answer>"] * 3
    assert b["problem_type"] == ["multiple choice"] * 3
    tail = tok.encode("<|im_start|>assistant\n")
    for row in b["input_ids"]:  # left padding: every prompt ends at the last position
        assert row[-len(tail) :].tolist() == tail


def test_eval_keeps_file_order_and_pads_the_last_batch(dataset, tok):
    recs, _ = _load(dataset)
    config = pipeline.PipelineConfig(batch_size=4, max_bad_fraction=0.5)
    batches = list(pipeline.eval_pipeline(recs, tok, PROMPTS, config, video=VIDEO, process_index=0, process_count=1))
    assert _ids(batches) == [f"g{i}" for i in range(NUM_GOOD)]
    assert [b["example_mask"].tolist() for b in batches][-1] == [True, True, False, False]
    assert all(b["input_ids"].shape[0] == 4 for b in batches)


def test_a_bad_video_is_decoded_and_warned_about_once_over_epochs(dataset, tok, caplog, monkeypatch):
    recs, _ = _load(dataset)
    garbage = os.path.join(dataset["root"], "garbage.mp4")
    chosen = [r for r in recs if r.uid in ("g0", "g1", "g2", "g3")] + [r for r in recs if r.video_path == garbage]
    assert len(chosen) == 5
    calls = []
    real_load = examples.video.load_video

    def counting_load(path, **kwargs):
        calls.append(path)
        return real_load(path, **kwargs)

    monkeypatch.setattr(examples.video, "load_video", counting_load)
    with caplog.at_level(logging.WARNING, logger="vtjax.data.pipeline"):
        it = iter(_sft(chosen, tok, num_epochs=3, max_bad_fraction=0.5))
        batches = list(it)
    assert calls.count(garbage) == 1  # epochs 2 and 3 skip it without decoding
    assert calls.count(os.path.join(dataset["root"], "good0.mp4")) == 3
    warnings = [r for r in caplog.records if garbage in r.getMessage()]
    assert len(warnings) == 1 and "could not decode" in warnings[0].getMessage()
    assert it.stats["seen"] == 15 and it.stats["skipped"] == 3  # still counted every epoch
    assert sorted(_ids(batches)) == sorted(["g0", "g1", "g2", "g3"] * 3)


def test_a_stream_saved_by_two_shards_resumes_on_one_where_they_stopped(dataset, tok):
    """Shard k of n reads elements k, k+n, ... of one stream: two shards that each pulled 2 examples
    consumed the stream's first 4, so one shard resumed from their states goes on with the 5th."""
    recs, _ = _load(dataset)
    good = [r for r in recs if r.uid.startswith("g")]
    config = lambda batch: pipeline.PipelineConfig(batch_size=batch, seed=3, num_epochs=None)  # noqa: E731
    one = lambda: pipeline.sft_pipeline(good, tok, PROMPTS, config(2), video=VIDEO, process_index=0,  # noqa: E731
                                        process_count=1)
    reference = _ids(_run(one(), n=3)[1])  # the stream, 2 examples per batch
    states, pulled = [], []
    for shard in range(2):
        it = iter(pipeline.sft_pipeline(good, tok, PROMPTS, config(1), video=VIDEO, process_index=shard,
                                        process_count=2))
        pulled += _ids([next(it), next(it)])
        states.append(it.get_state())
    assert sorted(pulled) == sorted(reference[:4])
    resumed = iter(one())
    resumed.set_state({"resharded_from": states})
    assert _ids([next(resumed)]) == reference[4:6]


def _packed(recs, tok, **cfg):
    return _sft(recs, tok, **{"token_budget": 256, "pack_lookahead": 3, **cfg})


def test_packing_fills_rows_with_whole_examples(dataset, tok):
    recs, _ = _load(dataset)
    _, plain = _run(_sft(recs, tok, seed=4, batch_size=1))
    alone = {b["record_id"][0]: b for b in plain}  # each example collated on its own
    _, packed = _run(_packed(recs, tok, seed=4))
    seen = []
    for b in packed:
        assert b["input_ids"].shape == (2, 256) and b["example_mask"].all()
        for e, rid in enumerate(b["record_id"]):
            row, segment = b["example_row"][e], np.sum(b["example_row"][:e] == b["example_row"][e]) + 1
            own = b["segment_ids"][row] == segment
            ref = alone[rid]
            n = int(ref["attention_mask"].sum())
            # The example lies whole and unchanged in its row, its loss mask with it.
            np.testing.assert_array_equal(b["input_ids"][row][own], ref["input_ids"][0, :n])
            np.testing.assert_array_equal(b["loss_mask"][row][own], ref["loss_mask"][0, :n])
            np.testing.assert_array_equal(b["grid_thw"][e], ref["grid_thw"][0])
        seen += b["record_id"]
    # Every usable example once, but the last few: they fill no whole batch and end the epoch.
    assert len(seen) == len(set(seen)) and set(seen) <= set(alone) and len(seen) >= len(alone) - 3
    slots = sum(b["segment_ids"].size for b in packed)  # examples of 116-120 tokens: two per 256-token row
    assert 1 - sum(int((b["segment_ids"] > 0).sum()) for b in packed) / slots < 0.1


def test_packed_resume_yields_exactly_the_next_batches(dataset, tok):
    recs, _ = _load(dataset)
    kwargs = dict(seed=3, num_epochs=2)
    _, full = _run(_packed(recs, tok, **kwargs))
    held_at = []
    for n in range(1, len(full)):
        it, head = _run(_packed(recs, tok, **kwargs), n)
        state = json.loads(json.dumps(it.get_state()))  # checkpoints store it as JSON
        if not state["held"]:
            continue
        held_at.append(n)
        resumed = iter(_packed(recs, tok, **kwargs))
        resumed.set_state(state)
        _assert_same(head + list(resumed), full)
        if len(held_at) == 2:
            break
    assert held_at, "no batch boundary held an example back: the test proves nothing"


def test_packed_stream_resumes_on_another_shard_count_with_the_held_examples(dataset, tok):
    recs, _ = _load(dataset)
    good = [r for r in recs if r.uid.startswith("g")]
    states, trained = [], []
    for shard in range(2):
        config = pipeline.PipelineConfig(batch_size=1, seed=3, num_epochs=1, token_budget=150, pack_lookahead=2)
        it = iter(pipeline.sft_pipeline(good, tok, PROMPTS, config, video=VIDEO, process_index=shard,
                                        process_count=2))
        trained += next(it)["record_id"]
        states.append(it.get_state())
    assert any(s["held"] for s in states)
    config = pipeline.PipelineConfig(batch_size=1, seed=3, num_epochs=1, token_budget=150, pack_lookahead=2)
    resumed = iter(pipeline.sft_pipeline(good, tok, PROMPTS, config, video=VIDEO, process_index=0,
                                         process_count=1))
    resumed.set_state({"resharded_from": states})
    rest = [rid for b in resumed for rid in b["record_id"]]
    # Nothing pulled but not trained on is lost: the held examples are read again (one row per batch, so the
    # epoch's end leaves nothing out).
    assert set(trained) | set(rest) == {r.uid for r in good}
