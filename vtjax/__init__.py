"""vtjax: Video-Thinker (Qwen2.5-VL, SFT + GRPO) in pure JAX."""

__version__ = "0.1.0"
