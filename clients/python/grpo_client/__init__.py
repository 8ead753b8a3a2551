"""The Python SDK and the `grpo` CLI of the GRPO trainer.

    from grpo_client import TrainerClient
    with TrainerClient("localhost:50051", token="...") as client:
        client.submit_file("prompts.jsonl")

See docs/client.md.
"""

from grpo_client.client import FieldViolation, SubmitError, SubmitResult, TrainerClient, TrainerError
from grpo_client.prompts import PromptError, PromptFileError, load_prompt_file, parse_prompt, read_prompt_file

__all__ = [
    "FieldViolation",
    "PromptError",
    "PromptFileError",
    "SubmitError",
    "SubmitResult",
    "TrainerClient",
    "TrainerError",
    "load_prompt_file",
    "parse_prompt",
    "read_prompt_file",
]
