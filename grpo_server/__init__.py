"""The GRPO trainer: a gRPC service that trains language models with group-relative policy optimization,
scoring completions on remote reward services."""

__version__ = "0.1.0"
