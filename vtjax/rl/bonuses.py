"""Video-R1's optional reward bonuses: T-GRPO's temporal-contrast bonus and the length bonus.

Pure NumPy rules over one step's rollouts, read from Video-R1's trainer
(tulerfeng/Video-R1 @59d65c3, `src/r1-v/src/open_r1/trainer/grpo_trainer.py`
and `vllm_grpo_trainer_modified.py`, flags `--temporal` and `--len_control`,
both on in its video GRPO scripts). Shapes: P prompts, G ordered completions
per prompt (N = P * G, each prompt's G consecutive), S shuffled-frame
completions per prompt (Video-R1: S = G // 2).

"Correct" is Video-R1's `accuracy > 0.1` on the UNWEIGHTED accuracy reward
(so a partial free-form / OCR / regression score above 0.1 counts).

Temporal contrast, per prompt (Video-R1 runs one prompt per device):
    applied  = mean(acc ordered) >= ratio * mean(acc shuffled)       (ratio 0.8)
    bonus_i  = bonus if applied and acc_i > 0.1 else 0                (bonus 0.3)
`>=` holds when both means are 0 (applied, but nothing is correct). The
means and the comparison are float32, as Video-R1's torch tensors. Prompts
without a shuffled rollout (`has_shuffled` False: Video-R1's image prompts)
get no bonus.

Length bonus, per prompt, on the ordered completions only:
    bonus_i = bonus if acc_i > 0.1 and low <= len_i <= high and the prompt
              has at least 2 correct completions else 0               (0.2, 320..512)
`len_i` counts completion tokens up to and including the EOS (all
`max_new_tokens` when none), Video-R1's `completion_mask.sum(1)`.
"""

from __future__ import annotations

import numpy as np

CORRECT_ABOVE = 0.1  # Video-R1: a completion is correct when its accuracy reward exceeds 0.1
MIN_CORRECT_FOR_LENGTH = 2  # Video-R1: `len(selected_indices) > 1`


def _groups(values, group: int, name: str) -> np.ndarray:
    """float32 [P, group] view of consecutive groups; checks the layout."""
    x = np.asarray(values, np.float32)
    if x.ndim != 1 or group < 1 or x.size % group:
        raise ValueError(f"{name} of shape {x.shape} does not split into groups of {group}.")
    return x.reshape(-1, group)


def correct(accuracy) -> np.ndarray:
    """bool, Video-R1's `accuracy > 0.1`, both sides float32 as its torch tensors (0.1 itself is not correct)."""
    return np.asarray(accuracy, np.float32) > np.float32(CORRECT_ABOVE)


def temporal_contrast_bonus(accuracy, shuffled_accuracy, group: int, shuffled_group: int, *,
                            bonus: float = 0.3, ratio: float = 0.8,
                            has_shuffled=None) -> tuple[np.ndarray, np.ndarray]:
    """T-GRPO bonus (module docstring).

    Args:
      accuracy: [P * group] unweighted accuracy of the ordered-frame completions.
      shuffled_accuracy: [P * shuffled_group] accuracy of the shuffled-frame completions.
      group, shuffled_group: G and S.
      bonus: added to each correct ordered completion of an applied prompt.
      ratio: the prompt is applied when ordered mean >= ratio * shuffled mean.
      has_shuffled: bool [P], False for prompts with no shuffled rollout (no bonus); default all True.

    Returns:
      (float32 [P * group] bonus, bool [P] applied).
    """
    ordered = _groups(accuracy, group, "accuracy")  # [P, G]
    shuffled = _groups(shuffled_accuracy, shuffled_group, "shuffled_accuracy")  # [P, S]
    if shuffled.shape[0] != ordered.shape[0]:
        raise ValueError(f"{ordered.shape[0]} prompts of ordered completions but {shuffled.shape[0]} shuffled.")
    video = np.ones(ordered.shape[0], bool) if has_shuffled is None else np.asarray(has_shuffled, bool)
    applied = video & (ordered.mean(axis=1) >= np.float32(ratio) * shuffled.mean(axis=1))  # [P], float32 as torch
    out = np.where(applied[:, None] & correct(ordered), bonus, 0.0)  # [P, G]
    return out.reshape(-1).astype(np.float32), applied


def length_bonus(accuracy, lengths, group: int, *, bonus: float = 0.2, low: int = 320,
                 high: int = 512) -> np.ndarray:
    """Length bonus (module docstring): float32 [P * group].

    Args:
      accuracy: [P * group] unweighted accuracy of the ordered-frame completions.
      lengths: [P * group] completion tokens including the EOS.
      group: G.
      bonus, low, high: the bonus and the inclusive token range.
    """
    ok = correct(_groups(accuracy, group, "accuracy"))  # [P, G]
    n = np.asarray(lengths, np.int64).reshape(ok.shape)  # [P, G]
    enough = ok.sum(axis=1, keepdims=True) >= MIN_CORRECT_FOR_LENGTH  # [P, 1]
    out = np.where(ok & enough & (n >= low) & (n <= high), bonus, 0.0)
    return out.reshape(-1).astype(np.float32)
