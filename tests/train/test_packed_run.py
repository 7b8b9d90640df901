"""Packed SFT through ``python -m vtjax.main``: a run stopped at a checkpoint and resumed ends bit-equal to an
uninterrupted one, its data state holding the examples packing had held back."""

from __future__ import annotations

import json

from tests.train.conftest import fake_devices, read_metrics, run_main
from tests.train.test_resume import _assert_bit_equal, _final_at

STEPS = 4


def _overrides(records_overrides, steps):
    return {**records_overrides, "data.packing": True, "data.token_budget": 256, "data.pack_lookahead": 4,
            "train.batch_size": 2, "train.num_steps": steps, "checkpoint.every_steps": 2, "log.every_steps": 1,
            "train.loss_weighting": "example"}


def test_a_packed_run_resumes_exactly(tmp_path, records_overrides):
    reference = run_main(tmp_path / "reference", _overrides(records_overrides, STEPS), arg="records", timeout=400, env=fake_devices(2))
    assert reference.returncode == 0, reference.output[-3000:]
    first = run_main(tmp_path / "resumed", _overrides(records_overrides, 2), arg="records", timeout=400, env=fake_devices(2))
    assert first.returncode == 0, first.output[-3000:]
    saved = json.loads((tmp_path / "resumed" / "checkpoints" / "2" / "data" / "process_0-of-1.json").read_text())
    assert saved["held"], "no example was held back at the stop: the test proves nothing"
    rest = run_main(tmp_path / "resumed", _overrides(records_overrides, STEPS), arg="records", timeout=400, env=fake_devices(2))
    assert rest.returncode == 0, rest.output[-3000:]
    want_state, want_data = _final_at(tmp_path / "reference", STEPS)
    got_state, got_data = _final_at(tmp_path / "resumed", STEPS)
    assert got_data == want_data
    _assert_bit_equal(got_state, want_state)
    # Rows of 256 tokens hold two examples of ~90 tokens each, never one alone.
    assert all(m["tokens"] > 2 * 128 for m in read_metrics(tmp_path / "reference"))
