"""Format reward on a table of tricky completions, with short (MM:SS) and long-video time stamps."""

import pytest

from vtjax.rl import rewards, tag_format
from vtjax.rl.tag_format import TimeFormat

B = "<time>00:01-00:03</time> <caption>A red circle appears.</caption> <think>It is first.</think>"
B2 = "<time>00:04-00:06</time><caption>A blue square moves.</caption><think>Later.</think>"

FORMAT_CASES = [
    # (completion, expected format reward, why)
    (f"{B}\n<answer>C</answer>", 1.0, "one block then the answer"),
    (f"Hmm, let me look. {B} Option A is wrong. {B2}\nSo:<answer>C</answer>  \n", 1.0, "free text, trailing ws"),
    (f"{B}<answer> C </answer>", 1.0, "spaces inside answer"),
    ("<time>00:01 - 00:03</time><caption>c</caption><think>t</think><answer>A</answer>", 1.0, "spaces at dash"),
    ("<time>00:03-00:03</time><caption>c</caption><think>t</think><answer>A</answer>", 1.0, "start == end"),
    ("<answer>C</answer>", 0.0, "no block"),
    (f"{B}", 0.0, "no answer"),
    (f"{B}<answer>C</answer><answer>D</answer>", 0.0, "two answers"),
    (f"<answer>C</answer>{B}", 0.0, "answer not last"),
    (f"{B}<answer>C</answer> done.", 0.0, "text after the answer"),
    (f"{B}<answer> </answer>", 0.0, "blank answer"),
    (f"{B}<answer>C", 0.0, "unclosed answer"),
    ("<time>00:01-00:03</time> <caption>x <think>y</think></caption><answer>C</answer>", 0.0, "nested"),
    ("<think><time>00:01-00:03</time></think><caption>c</caption><answer>C</answer>", 0.0, "nested time"),
    ("<time>00:01-00:03</time><caption>c</caption><think>t<answer>C</answer>", 0.0, "think unclosed"),
    (f"{B}</think><answer>C</answer>", 0.0, "stray close"),
    ("<time>00:01-00:03</time><caption>c</think><answer>C</answer>", 0.0, "mismatched close"),
    ("<time>00:01-00:03</time><caption>c</caption><answer>C</answer>", 0.0, "block without think"),
    (f"{B}<time>00:04-00:06</time><caption>c</caption><answer>C</answer>", 0.0, "second block incomplete"),
    ("<caption>c</caption><time>00:01-00:03</time><think>t</think><answer>C</answer>", 0.0, "wrong order"),
    ("<time>00:01-00:03</time><caption> </caption><think>t</think><answer>C</answer>", 0.0, "blank caption"),
    ("<time>1:05-0:30</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "1:05-0:30"),
    ("<time>01:05-00:30</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "start > end"),
    ("<time>61:70</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "61:70 not a range"),
    ("<time>00:10-01:70</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "seconds >= 60"),
    ("<time>0:10-0:20</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "one-digit minutes"),
    ("<time>00:10-00:20s</time><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "trailing unit"),
    ("<TIME>00:01-00:03</TIME><caption>c</caption><think>t</think><answer>C</answer>", 0.0, "upper-case tag"),
]


@pytest.mark.parametrize("text,want,why", FORMAT_CASES, ids=[c[2] for c in FORMAT_CASES])
def test_format_reward(text, want, why):
    assert rewards.format_reward(text) == want, why



LONG = TimeFormat.LONG


def block(stamp: str) -> str:
    return f"<time>{stamp}</time><caption>c</caption><think>t</think><answer>C</answer>"


# (time range, format reward with mm:ss, with long, why)
STAMP_CASES = [
    ("00:10-00:20", 1.0, 1.0, "MM:SS in both"),
    ("99:00-99:59", 1.0, 1.0, "largest two-digit minutes"),
    ("100:05-101:00", 0.0, 1.0, "three-digit minutes"),
    ("001:30-002:00", 0.0, 1.0, "three digits with leading zeros"),
    ("01:02:03-01:02:10", 0.0, 1.0, "HH:MM:SS"),
    ("59:50-01:00:10", 0.0, 1.0, "MM:SS to HH:MM:SS (3590 s to 3610 s)"),
    ("01:00:10-59:50", 0.0, 0.0, "start after end across forms"),
    ("01:60:00-02:00:00", 0.0, 0.0, "minutes >= 60 in HH:MM:SS"),
    ("01:00:60-01:01:00", 0.0, 0.0, "seconds >= 60 in HH:MM:SS"),
    ("100:61-101:00", 0.0, 0.0, "seconds >= 60 after three-digit minutes"),
    ("1:02:03-1:02:10", 0.0, 0.0, "one-digit hours"),
    ("1000:00-1000:10", 0.0, 0.0, "four-digit minutes"),
    ("0:10-0:20", 0.0, 0.0, "one-digit minutes"),
    ("01:02:03:04-01:02:03:05", 0.0, 0.0, "four fields"),
    (" 01:02:03 - 01:02:04 ", 0.0, 1.0, "spaces around the dash"),
    ("01:02:03", 0.0, 0.0, "not a range"),
]


@pytest.mark.parametrize("stamp,want_short,want_long,why", STAMP_CASES, ids=[c[3] for c in STAMP_CASES])
def test_time_formats(stamp, want_short, want_long, why):
    assert tag_format.format_reward(block(stamp)) == want_short, why
    assert tag_format.format_reward(block(stamp), TimeFormat.MM_SS) == want_short, why
    assert tag_format.format_reward(block(stamp), LONG) == want_long, why
    assert rewards.format_reward(block(stamp), "long") == want_long, why


def test_parse_stamp_and_range():
    assert tag_format.parse_stamp("01:02:03", LONG) == 3723
    assert tag_format.parse_stamp("123:45", LONG) == 123 * 60 + 45
    assert tag_format.parse_stamp("07:08") == 428
    assert tag_format.parse_stamp("01:02:03") is None  # MM:SS only by default
    assert tag_format.parse_range("00:05-00:12") == (5, 12)
    assert tag_format.parse_range("00:03-00:03") == (3, 3)
    assert tag_format.parse_range("59:59-01:00:00", LONG) == (3599, 3600)
    assert tag_format.parse_range("00:0５-00:12") is None  # ASCII digits only
