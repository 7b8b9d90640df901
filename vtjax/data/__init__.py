"""Video data pipeline: decoding, vision preprocessing, tokenizer, chat template, records, grain loaders.

Modules (import the one you need; this package imports nothing heavy):
  vision     smart_resize, normalisation, HF patch layout (patchify_video / patchify_image)
  resize     bicubic antialiased resize (torchvision semantics)
  sampling   qwen-vl-utils frame-count, index and pixel-budget rules
  video      load_video: decord or PyAV, sampled frames only
  tokenizer  tokenizers / sentencepiece backends with Qwen's special tokens
  chat       Qwen chat template, <|video_pad|> expansion, label mask
  records    Video-R1 / Video-Thinker record loading and validation
  examples   record -> example, run in grain workers
  batching   collate (one example per row) and collate_packed (several per row) to static shapes
  packing    which examples go into which row of a packed batch
  pipeline   SFT / GRPO / eval grain pipelines

See docs/data.md.
"""
