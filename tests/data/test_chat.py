"""Chat template, <|video_pad|> expansion against the HF Qwen2.5-VL processor, label mask."""

import json

import ml_collections
import numpy as np
import pytest

from vtjax import errors
from vtjax.data import chat, vision
from vtjax.data import tokenizer as tok_lib

OPTIONS = ["A. He sits down", "B. He leaves", "C. He waves"]


# Video-R1 @59d65c3 (grpo.py / sft_video.py / eval_bench.py): problem + "Options:\n" + every option + "\n",
# nothing stripped or inserted; without options the problem alone. Expected strings written by hand.
LAYOUT = [
    ("What does the man do? ", OPTIONS, "What does the man do? Options:\nA. He sits down\nB. He leaves\nC. He waves\n"),
    ("What does the man do?", OPTIONS[:1], "What does the man do?Options:\nA. He sits down\n"),
    ("Q\n", ["A. x", "B. y"], "Q\nOptions:\nA. x\nB. y\n"),
    ("How many?", [], "How many?"),
    ("How many? ", (), "How many? "),
    ("", ["A. x"], "Options:\nA. x\n"),
    ("Pick:", ["A. two\nlines", "B. y"], "Pick:Options:\nA. two\nlines\nB. y\n"),
    ("Pick", ["A. x "], "PickOptions:\nA. x \n"),
]


@pytest.mark.parametrize("problem,options,expected", LAYOUT)
def test_format_question_is_video_r1s_layout(problem, options, expected):
    assert chat.format_question(problem, options) == expected
    assert chat.format_question(problem, options, "Q: {question}\nAnswer.") == f"Q: {expected}\nAnswer."


def test_prompt_files_load_and_carry_the_instructions():
    prompts = chat.Prompts.video_thinker()
    for tag in ("<time>", "<caption>", "<think>", "<answer>"):
        assert tag in prompts.system
    assert "{question}" in prompts.question_template
    with pytest.raises(ValueError, match="placeholder"):
        chat.Prompts(system="s", question_template="no placeholder")


def test_render_prompt_is_qwens_template():
    assert chat.render_prompt("SYS", "hi") == (
        "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("t,h,w", [(4, 56, 84), (16, 112, 56)])
def test_video_pad_expansion_matches_hf_processor(tokenizer_json, t, h, w):
    transformers = pytest.importorskip("transformers")
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=transformers.Qwen2TokenizerFast(tokenizer_file=tokenizer_json),
    )
    frames = np.random.default_rng(0).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    user = chat.format_question("What does the man do?", OPTIONS, "{question}\nAnswer with one letter.")
    text = chat.render_prompt("You are a helpful assistant.", user)
    sample_fps = 1.6
    ref = processor(text=[text], videos=[frames], fps=sample_fps, return_tensors="np")

    tok = tok_lib.load_tokenizer(tokenizer_json)
    values, grid = vision.patchify_video(frames)
    ours = chat.encode_chat(
        tok, system="You are a helpful assistant.", user_text=user,
        vision_tokens=vision.num_vision_tokens(grid[0]),
    )
    np.testing.assert_array_equal(ours.input_ids, ref["input_ids"][0])
    np.testing.assert_array_equal(grid, ref["video_grid_thw"])
    np.testing.assert_allclose(values, ref["pixel_values_videos"], atol=1e-6, rtol=0)
    assert vision.second_per_grid_t(sample_fps) == pytest.approx(ref["second_per_grid_ts"][0])
    assert (ours.input_ids == tok.token_to_id(tok_lib.VIDEO_PAD)).sum() == t // 2 * h // 14 * w // 14 // 4


def test_label_mask_covers_the_answer_only(sp_model):
    tok = tok_lib.load_tokenizer(sp_model)
    answer = "<think>he walks out</think> <answer>B</answer>"
    enc = chat.encode_chat(tok, system="S", user_text="Q", vision_tokens=6, answer=answer)
    ids, mask = enc.input_ids, enc.loss_mask
    prompt = tok.encode(chat.render_prompt("S", "Q").replace(tok_lib.VIDEO_PAD, tok_lib.VIDEO_PAD * 6))
    assert ids[: enc.prompt_length].tolist() == prompt
    target = tok.encode(answer) + [tok.token_to_id(tok_lib.IM_END)]
    assert ids[mask].tolist() == target  # exactly the answer and the closing <|im_end|>
    assert not mask[: enc.prompt_length].any() and not mask[-1]  # trailing "\n" is input only
    assert tok.decode(ids[enc.prompt_length :]) == answer + "<|im_end|>\n"


def test_include_prompt_in_loss_masks_vision_pads(sp_model):
    tok = tok_lib.load_tokenizer(sp_model)
    enc = chat.encode_chat(tok, system="S", user_text="Q", vision_tokens=6, answer="A", include_prompt_in_loss=True)
    pad = enc.input_ids == tok.token_to_id(tok_lib.VIDEO_PAD)
    assert pad.sum() == 6 and not enc.loss_mask[pad].any()
    trail = len(tok.encode("\n"))  # the newline after <|im_end|> is input only
    assert enc.loss_mask[~pad][:-trail].all() and not enc.loss_mask[-trail:].any()


def test_prompt_only_for_generation(sp_model):
    tok = tok_lib.load_tokenizer(sp_model)
    system, user = "You are a helpful assistant.", "What does the man do?"
    enc = chat.encode_chat(tok, system=system, user_text=user, vision_tokens=None)
    assert tok.decode(enc.input_ids) == chat.render_prompt(system, user, vision_kind=None)
    assert enc.prompt_length == len(enc.input_ids) and not enc.loss_mask.any()


def test_type_instructions_and_video_summary_fill_the_user_turn(tmp_path):
    """Video-R1 appends its per-type instruction after the filled template; {video_summary} takes the record's."""
    (tmp_path / "types.json").write_text(json.dumps({"numerical": " Give a number.", "OCR": " Transcribe."}))
    base = chat.Prompts(system="S", question_template="Summary: {video_summary}\n{question}\nThink first.")
    prompts = base.with_type_instructions(str(tmp_path / "types.json"))
    assert prompts.user_text("How many cups? ", (), "numerical", "A kitchen.") == (
        "Summary: A kitchen.\nHow many cups? \nThink first. Give a number.")
    assert prompts.user_text("Which? ", ("A. x", "B. y"), "multiple choice") == (
        "Summary: \nWhich? Options:\nA. x\nB. y\n\nThink first.")  # no instruction for this type
    assert base.user_text("Read it.", (), "OCR") == "Summary: \nRead it.\nThink first."
    hash(prompts)  # stays hashable (ExampleBuilder is a frozen dataclass)


def test_prompts_from_config_name_the_bad_field(tmp_path):
    data = ml_collections.ConfigDict({"system_prompt": "", "question_prompt": "", "type_instructions": ""})
    assert chat.Prompts.from_config(data) == chat.Prompts.video_thinker()
    data.type_instructions = str(tmp_path / "missing.json")
    with pytest.raises(errors.ConfigError, match="data.type_instructions: .*missing.json"):
        chat.Prompts.from_config(data)
    (tmp_path / "bad.json").write_text('["not", "a", "table"]')
    data.type_instructions = str(tmp_path / "bad.json")
    with pytest.raises(errors.ConfigError, match="data.type_instructions: .*problem types to instruction strings"):
        chat.Prompts.from_config(data)
    (tmp_path / "q.txt").write_text("no placeholder here")
    data.type_instructions, data.question_prompt = "", str(tmp_path / "q.txt")
    with pytest.raises(errors.ConfigError, match="data.question_prompt: question_template must contain"):
        chat.Prompts.from_config(data)
    data.question_prompt = str(tmp_path / "nope.txt")
    with pytest.raises(errors.ConfigError, match=r"data.question_prompt='.*nope.txt' does not exist"):
        chat.Prompts.from_config(data)
