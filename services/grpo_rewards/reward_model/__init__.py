"""grpo-reward-rm: a learned reward model (one-label sequence classifier) with dynamic micro-batching."""
