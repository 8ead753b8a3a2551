"""grpo-reward-format: rewards a required answer format (`<think>…</think>` then a `\\boxed{…}` answer),
to be combined with a correctness reward by weights."""
