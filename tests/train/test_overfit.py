"""End to end through `python -m vtjax.main` on generated videos: a tiny model memorises 8 examples."""

from __future__ import annotations

from tests.train.conftest import read_metrics, run_main


def test_tiny_model_overfits_eight_examples(tmp_path, records_overrides):
    steps = 50
    proc = run_main(tmp_path, {**records_overrides, "train.num_steps": steps, "train.lr": 1e-2,
                               "train.end_lr_ratio": 0.1, "log.every_steps": 1,
                               "checkpoint.every_steps": steps}, arg="records", timeout=400)
    assert proc.returncode == 0, proc.output[-3000:]
    losses = [m["loss"] for m in read_metrics(tmp_path)]
    assert len(losses) == steps
    assert 5.0 < losses[0] < 7.0  # ~ln(512): the random model knows nothing
    assert losses[-1] < 0.1 * losses[0], losses
    assert (tmp_path / "checkpoints" / str(steps)).is_dir()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
