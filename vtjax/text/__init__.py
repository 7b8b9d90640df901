"""Pure text rules shared by the rewards (`vtjax.rl`) and evaluation (`vtjax.eval`).

  answers       extract_answer (tag, else explicit option forms only), choice_letter, ground_truth_letter
  grounding     <time> segment parsing, IoU, GroundingRule (max_iou, union, one_to_one), mIoU / R@θ
  text_metrics  WER and stemmed ROUGE-1/2/L through maintained libraries (jiwer, rouge-score)

Nothing here imports another vtjax package, so rl, eval and data can all use it.
"""
