"""Pallas kernels (flash attention forward/backward) behind vtjax.ops.attention."""
