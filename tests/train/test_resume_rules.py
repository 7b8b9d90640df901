"""resume.check_config on hand-made saved / current configs (no training): what resumes, what is refused."""

from __future__ import annotations

import pytest

from vtjax.errors import CheckpointError
from vtjax.train.resume import check_config

SAVED = {"mode": "sft", "model": {"preset": "tiny", "init_from": ""}, "train": {"lr": 1e-3, "batch_size": 8},
         "data": {"fps": 2.0}}
DEFAULTS = {"mode": "sft", "train": {"lr": 1e-4, "batch_size": 16}, "data": {"fps": 2.0, "max_frames": 16}}


def _current(**changes):
    current = {k: dict(v) if isinstance(v, dict) else v for k, v in SAVED.items()}
    for dotted, value in changes.items():
        section, field = dotted.split(".")
        current[section][field] = value
    return current


def test_safe_change_is_returned_for_the_log():
    changes = check_config(SAVED, _current(**{"train.lr": 2e-3}), workdir="w", step=4, defaults=DEFAULTS)
    assert changes == {"train.lr": (1e-3, 2e-3)}


def test_unsafe_change_is_refused_naming_it():
    with pytest.raises(CheckpointError, match=r"train.batch_size 8 -> 4"):
        check_config(SAVED, _current(**{"train.batch_size": 4}), workdir="w", step=4, defaults=DEFAULTS)


def test_field_added_since_the_save_resumes_at_its_default_only():
    # data.max_frames did not exist when the run was saved; at its default the run computes what it did
    at_default = check_config(SAVED, _current(**{"data.max_frames": 16}), workdir="w", step=4, defaults=DEFAULTS)
    assert at_default == {"data.max_frames": ("<absent>", 16)}
    with pytest.raises(CheckpointError, match=r"data.max_frames '<absent>' -> 8"):
        check_config(SAVED, _current(**{"data.max_frames": 8}), workdir="w", step=4, defaults=DEFAULTS)
    with pytest.raises(CheckpointError, match="data.max_frames"):  # without the schema nothing is assumed
        check_config(SAVED, _current(**{"data.max_frames": 16}), workdir="w", step=4)


def test_another_mode_is_refused_before_anything_else():
    with pytest.raises(CheckpointError, match="holds a sft run at step 4; this is a grpo config"):
        check_config(SAVED, {**_current(**{"train.batch_size": 4}), "mode": "grpo"}, workdir="w", step=4)


def test_resume_refuses_a_model_other_than_the_saved_one():
    from vtjax import errors  # noqa: PLC0415
    from vtjax.models.qwen2_5_vl import Qwen25VLConfig  # noqa: PLC0415
    from vtjax.train.resume import check_model_config  # noqa: PLC0415

    saved = Qwen25VLConfig.tiny().to_hf_dict()
    check_model_config(saved, dict(saved), step=4)  # the same model resumes
    check_model_config(None, saved, step=4)  # a step saved before config.json existed resumes
    other = Qwen25VLConfig.tiny().replace(eos_token_id=7).to_hf_dict()  # e.g. another tokenizer's ids
    with pytest.raises(errors.CheckpointError, match=r"step 4 \(eos_token_id: .* -> 7\)"):
        check_model_config(saved, other, step=4)
