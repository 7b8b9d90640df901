"""Training: mesh and sharding rules, optimizer, checkpoints, and one loop (`loop`) that runs the SFT and
GRPO objectives (`sft`, `grpo`)."""
