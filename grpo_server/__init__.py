"""The GRPO trainer: a gRPC service that trains language models with group-relative policy optimization,
scoring completions on remote reward services."""

import os

__version__ = "0.1.0"

# vLLM logs to stdout unless told otherwise (its logger is set up when vllm is first imported), and the
# trainer's stdout carries one line for scripts ("grpo-server listening on port ..."): its logs go to stderr
# with everything else. An operator's own VLLM_LOGGING_STREAM is kept.
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
