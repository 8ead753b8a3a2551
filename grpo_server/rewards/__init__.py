"""The reward router: a live registry of reward backends, and the router that scores rollouts on them.

See docs/rewards-router.md. Import the parts from their modules (`grpo_server.rewards.registry`,
`.router`, `.breaker`, `.client`); this package keeps its import light.
"""
