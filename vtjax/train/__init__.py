"""Training: mesh and sharding rules, optimizer, checkpoints, SFT and GRPO loops."""
