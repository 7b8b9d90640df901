"""Image records: read, sized and tokenised as Video-R1's qwen-vl-utils + transformers' processor do."""

import json

import numpy as np
import pytest
from PIL import Image

from vtjax.data import chat, examples, image, records, vision
from vtjax.data import tokenizer as tok_lib

transformers = pytest.importorskip("transformers")
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor  # noqa: E402


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish uint8 image (gradients + noise), so resampling differences would show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("height,width", [(480, 640), (97, 213), (30, 30), (1080, 1920)])
def test_load_image_matches_the_hf_image_processor(tmp_path, height, width):
    path = tmp_path / f"{height}x{width}.png"
    Image.fromarray(_photo(height, width)).save(path)
    pixels = image.load_image(str(path))  # Video-R1: 4*28*28 .. 256*28*28 pixels
    processor = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=256 * 28 * 28)
    ref = processor(images=[Image.open(path)], return_tensors="np")
    values, grid = vision.patchify_image(pixels)
    np.testing.assert_array_equal(grid, ref["image_grid_thw"])
    np.testing.assert_allclose(values, ref["pixel_values"], atol=1e-6, rtol=0)
    assert pixels.shape[0] * pixels.shape[1] <= 256 * 28 * 28


def test_a_480x640_image_is_sized_by_the_video_r1_budget():
    # 480x640 rounds to 476x644 = 306,544 > 200,704; beta = sqrt(307200 / 200704) = 1.2372,
    # floor(480 / 1.2372 / 28) = 13 -> 364, floor(640 / 1.2372 / 28) = 18 -> 504.
    assert vision.smart_resize(480, 640, min_pixels=image.VIDEO_R1_IMAGE_MIN_PIXELS,
                               max_pixels=image.VIDEO_R1_IMAGE_MAX_PIXELS) == (364, 504)


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((56, 56, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[:28, :, 3] = 0  # fully transparent top half
    rgba[28:, :, 3] = 128  # half transparent bottom half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = image.load_image(str(tmp_path / "a.png"), min_pixels=28 * 28, max_pixels=56 * 56)  # no resize
    assert (out[:28] == 255).all()
    # white * (1 - 128/255) + colour * 128/255: 127.0 + (5.02, 10.04, 15.06)
    np.testing.assert_allclose(out[28:].reshape(-1, 3), np.tile([132, 137, 142], (28 * 56, 1)), atol=1)


def test_bad_images_raise_image_error(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(image.ImageError, match="cannot read the image"):
        image.load_image(str(tmp_path / "text.png"))
    with pytest.raises(image.ImageError, match="file not found"):
        image.load_image(str(tmp_path / "missing.png"))
    Image.fromarray(np.zeros((10, 3000, 3), np.uint8)).save(tmp_path / "strip.png")
    with pytest.raises(image.ImageError, match="aspect ratio"):
        image.load_image(str(tmp_path / "strip.png"))


def _image_record(tmp_path, name="img.png", **extra) -> records.Record:
    raw = {"problem_id": 7, "problem": "What colour is the sign? ", "data_type": "image",
           "problem_type": "multiple choice", "options": ["A. red", "B. blue"], "path": f"./{name}",
           "data_source": "Test", "process": "<think>it is red</think>", "solution": "<answer>A</answer>"}
    raw.update(extra)
    (tmp_path / "r.json").write_text(json.dumps([raw]))
    recs, problems = records.load_records(tmp_path / "r.json", str(tmp_path))
    assert problems == []
    return recs[0]


def test_image_record_example_matches_the_hf_processor(tmp_path, tokenizer_json):
    """ExampleBuilder on an image record == Qwen2.5-VL's processor on the same chat and image."""
    Image.fromarray(_photo(150, 260, seed=3)).save(tmp_path / "img.png")
    rec = _image_record(tmp_path)
    tok = tok_lib.load_tokenizer(tokenizer_json)
    prompts = chat.Prompts(system="You are a helpful assistant.", question_template="{question}Answer briefly.")
    example = examples.ExampleBuilder(tok, prompts, "sft", max_length=4096)(rec)
    assert not isinstance(example, examples.Skipped), example
    assert example["is_image"] and example["second_per_grid_t"] == 0.0

    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=256 * 28 * 28),
        tokenizer=transformers.Qwen2TokenizerFast(tokenizer_file=tokenizer_json),
    )
    user = chat.format_question(rec.problem, rec.options, prompts.question_template)
    text = chat.render_prompt(prompts.system, user, vision_kind=records.DataType.IMAGE)
    ref = processor(text=[text], images=[Image.open(tmp_path / "img.png")], return_tensors="np")
    prompt_length = ref["input_ids"].shape[1]
    np.testing.assert_array_equal(example["input_ids"][:prompt_length], ref["input_ids"][0])
    np.testing.assert_array_equal(example["grid_thw"], ref["image_grid_thw"][0])
    np.testing.assert_allclose(vision.normalize_rows(example["patches"]), ref["pixel_values"], atol=1e-6, rtol=0)
    image_pad = tok.token_to_id(tok_lib.IMAGE_PAD)
    assert (example["input_ids"] == image_pad).sum() == vision.num_vision_tokens(example["grid_thw"])
    assert (example["input_ids"] == tok.token_to_id(tok_lib.VIDEO_PAD)).sum() == 0
    answer = tok.decode(example["input_ids"][example["loss_mask"]].tolist())
    assert answer == rec.sft_target + "<|im_end|>"


def test_an_unreadable_image_is_skipped_once(tmp_path, tokenizer_json):
    (tmp_path / "img.png").write_bytes(b"\x89PNG broken")
    rec = _image_record(tmp_path)
    builder = examples.ExampleBuilder(tok_lib.load_tokenizer(tokenizer_json), chat.Prompts(system="S"), "eval")
    first = builder(rec)
    assert isinstance(first, examples.Skipped) and "cannot read the image" in first.reason
    assert builder.bad_files == {rec.video_path: first.reason}
    assert builder(rec) == first  # remembered: not read again
