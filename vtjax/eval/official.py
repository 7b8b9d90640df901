"""The released benchmarks' own multiple-choice scorers, as behaviours (REFERENCE.md §4).

Each reads a raw model output and says what the benchmark's scorer would
take as the answer; `correct` compares with the right letter the way that
scorer does. Written from the released code's behaviour, quirks included:

Video-Holmes (`evaluate.py`, TencentARC/Video-Holmes @52ef8da)
  1. the LAST `<answer>...</answer>` (stripped; may be empty), else the whole output;
  2. the first letter of A, B, C, D, E, F, IN THAT ORDER, for which `"L "`,
     `"L:"` or `"[L"` occurs in it (so `B: ... A ` is A);
  3. else the first of A..F that occurs at all, case-sensitive (`I think D` is D,
     `A man...` is A); else no answer (wrong).

CG-Bench (`run/run_api.py` post_process, CG-Bench/CG-Bench @f826608)
  1. the text between the first "```json" and the next "```", stripped; bare
     words after ": " are quoted (`{"result": B}` reads as "B"); if it parses
     and has "result", correct iff that value equals the right letter exactly;
  2. otherwise (no block, bad JSON, no "result"): correct iff the right
     letter is among the standalone capitals `\\b[A-H]\\b` of the WHOLE output
     (`A or B` is a hit for both); none at all is no answer (wrong).

VRBench (`evaluation/calculate_scores.py` extract_mcq_answer, OpenGVLab/VRBench)
  eight rules, the first that finds a letter A-E decides (case-insensitive
  unless noted, the letter upper-cased): `\\boxed{X}`; `<Answer> X`; the last
  line `X. text`; the last "Answer"/"answer is"/"correct answer"/"final
  answer"/"final"/"therefore"/"conclusion" X (patterns in that order, the last
  match of the combined list); the last `X.`, else `X)`, else `X:`; the last
  lone `X` followed by whitespace before a capital or the end; the last
  standalone letter after punctuation clean-up; the last standalone capital.
  Lenient by design: `I see a dog` answers A.
"""

from __future__ import annotations

import json
import re

HOLMES_LETTERS = "ABCDEF"
_LAST_ANSWER_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)


def video_holmes_letter(output: str) -> str | None:
    """The option letter Video-Holmes' scorer reads from `output`, or None ("WRONG")."""
    found = _LAST_ANSWER_RE.findall(output)
    choice = found[-1].strip() if found else output
    for letter in HOLMES_LETTERS:
        if f"{letter} " in choice or f"{letter}:" in choice or f"[{letter}" in choice:
            return letter
    for letter in HOLMES_LETTERS:
        if letter in choice:
            return letter
    return None


# ---------------------------------------------------------------- CG-Bench

_BARE_WORD_RE = re.compile(r"(?<=:\s)([A-Za-z_]\w*)")
_CG_LETTER_RE = re.compile(r"\b[A-H]\b")


NO_RESULT = object()  # the json block is missing or unreadable (a JSON null is a result: it is wrong)


def cg_bench_json_result(output: str):
    """The `"result"` of the output's first ```json block (bare words quoted), or NO_RESULT."""
    start = output.find("```json")
    end = output.find("```", start + len("```json")) if start != -1 else -1
    if start == -1 or end == -1:
        return NO_RESULT
    content = output[start + len("```json"):end].strip()
    if not content:
        return NO_RESULT
    try:
        return json.loads(_BARE_WORD_RE.sub(r'"\1"', content))["result"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return NO_RESULT


def cg_bench_answer(output: str) -> str | None:
    """What CG-Bench's scorer reads: the json result as text, else the standalone capitals A-H joined by ','."""
    result = cg_bench_json_result(output)
    if result is not NO_RESULT:
        return json.dumps(result) if not isinstance(result, str) else result
    letters = _CG_LETTER_RE.findall(output)
    return ",".join(letters) if letters else None


def cg_bench_correct(output: str, right: str) -> bool:
    """Whether CG-Bench's scorer counts `output` right (the json result; else any standalone right letter)."""
    result = cg_bench_json_result(output)
    if result is not NO_RESULT:
        return result == right
    return right in _CG_LETTER_RE.findall(output)


# ---------------------------------------------------------------- VRBench

_VR_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
             "!"]
_VR_COMMA_NUM = re.compile(r"(\d)(\,)(\d)")
_VR_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # the released lookahead never fires: every '.' not before a digit
_VR_ANSWER_PATTERNS = [re.compile(p, re.IGNORECASE) for p in (
    r"Answer[:\s]+([A-E])(?:\s|$|\.|,)", r"answer is[:\s]+([A-E])(?:\s|$|\.|,)",
    r"correct answer[:\s]+([A-E])(?:\s|$|\.|,)", r"final answer[:\s]+([A-E])(?:\s|$|\.|,)",
    r"final[:\s]+([A-E])(?:\s|$|\.|,)", r"therefore[:\s]+([A-E])(?:\s|$|\.|,)",
    r"conclusion[:\s]+([A-E])(?:\s|$|\.|,)")]
_VR_LABEL_PATTERNS = [re.compile(p, re.IGNORECASE) for p in (r"([A-E])\.", r"([A-E])\)", r"([A-E]):")]
_VR_LONE_RE = re.compile(r"(?:^|\n|\s)([A-E])\s+(?=[A-Z]|$|\n)", re.IGNORECASE | re.MULTILINE)
_VR_WORD_RE = re.compile(r"\b([A-E])\b", re.IGNORECASE)
_VR_CAPITAL_RE = re.compile(r"\b([A-E])\b")


def _vrbench_clean(text: str) -> str:
    """VRBench's punctuation clean-up (a VQA-style normaliser), lower-cased."""
    out = text
    for p in _VR_PUNCT:
        if (p + " " in text or " " + p in text) or _VR_COMMA_NUM.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _VR_PERIOD.sub("", out, 32)  # the release passes re.UNICODE (32) as the count: the first 32 periods
    return out.strip("'").strip('"').strip(")").strip("(").strip().lower()


def vrbench_letter(output: str) -> str | None:
    """The option letter VRBench's scorer reads from `output`, or None."""
    if not output:
        return None
    m = re.search(r"\\boxed\{([A-E])\}", output, re.IGNORECASE)
    if m:
        return m.group(1).upper()
    m = re.search(r"<Answer>\s*([A-E])", output, re.IGNORECASE)
    if m:
        return m.group(1).upper()
    found = re.findall(r"^([A-E])\.\s*(.+)$", output.strip(), re.IGNORECASE | re.MULTILINE)
    if found:
        return found[-1][0].upper()
    found = [x for p in _VR_ANSWER_PATTERNS for x in p.findall(output)]
    if found:
        return found[-1].upper()
    for p in _VR_LABEL_PATTERNS:
        found = p.findall(output)
        if found:
            return found[-1].upper()
    found = _VR_LONE_RE.findall(output)
    if found:
        return found[-1].upper()
    found = _VR_WORD_RE.findall(_vrbench_clean(output.replace("\n", " ").replace("\t", " ").strip()))
    if found:
        return found[-1].upper()
    found = _VR_CAPITAL_RE.findall(output)
    if found:
        end = _VR_WORD_RE.findall(output.lower()[-50:])
        return (end[-1] if end else found[-1]).upper()
    return None
