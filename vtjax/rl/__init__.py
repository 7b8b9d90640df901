"""GRPO pieces that run outside the model: rewards (host, pure Python) and advantages / loss (jnp).

Modules:
  rewards       format / accuracy / temporal-IoU rewards, registry, combine_rewards
  text_metrics  WER and ROUGE-1/2/L used by the accuracy reward
  grpo          group_advantages, completion_mask, grpo_loss

See docs/rl.md.
"""
