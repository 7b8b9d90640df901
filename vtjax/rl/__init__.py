"""GRPO pieces that run outside the model: rewards (host, pure Python) and advantages / loss (jnp).

Modules:
  rewards       registry, RewardOptions, combine_rewards, temporal-IoU reward
  accuracy      accuracy reward: Video-R1's rules (default) or lenient ones
  tag_format    Video-Thinker format reward, MM:SS or long-video time stamps
  grpo          group_advantages, completion_mask, grpo_loss
  bonuses       Video-R1's optional T-GRPO temporal-contrast and length bonuses

See docs/rl.md.
"""
