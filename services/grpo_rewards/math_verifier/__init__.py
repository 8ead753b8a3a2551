"""grpo-reward-math: final-answer extraction and math-verify comparison in a process pool."""
