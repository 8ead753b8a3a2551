"""The API's limits and auth settings (sections `limits` and `auth` of the trainer's config).

Every limit has a default that suits a laptop run and a production run alike; each is enforced by
grpo_server.api.validation (or, for the message size, by the gRPC server itself).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

KIB = 1024
MIB = 1024 * 1024
MAX_GRPC_MESSAGE_BYTES = 2**31 - 1
"""gRPC's message size options are C ints: a larger value fails when the server is built."""


def _path_given(value: str) -> str:
    """A path setting's value: an empty one is an error, not a quiet "unset" (an empty templated value
    must not turn auth or TLS off)."""
    if not value.strip():
        raise PydanticCustomError(
            "empty_path", "{description}", {"description": f"{value!r} is not a path; leave the field out for its default"}
        )
    return value


PathText = Annotated[str, AfterValidator(_path_given)]
"""A file or directory path in the config: a non-empty string."""


def _plain_type(annotation: Any) -> Any:
    """`int` for `int` and `int | None`; the annotation itself otherwise."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


class SettingsModel(BaseModel):
    """Base of the config's sections: unknown fields, infinite or NaN numbers, and a value of another
    kind where a whole number or true/false is asked for are errors (pydantic would turn `true` into 1,
    `2.0` into 2 and "yes" into true). Numbers with a fraction stay lax: YAML reads `1e-5` as a string."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_surprising_conversions(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:  # an optional field's "unset"; a required one refuses None by its type
            return value
        kind = _plain_type(cls.model_fields[info.field_name].annotation) if info.field_name else None
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise PydanticCustomError("whole_number", "{description}", {"description": f"{value!r} is not a whole number"})
        if kind is bool and not isinstance(value, bool):
            raise PydanticCustomError("boolean", "{description}", {"description": f"{value!r} is not true or false"})
        return value


class ApiLimits(SettingsModel):
    """Limits on what SubmitPrompts accepts. Sizes are UTF-8 bytes unless said otherwise."""

    max_message_bytes: int = Field(
        default=64 * MIB,
        ge=1 * MIB,
        le=MAX_GRPC_MESSAGE_BYTES,
        description="The largest gRPC message the server receives or sends, in bytes (at most 2^31-1, gRPC's limit).",
    )
    max_prompts_per_request: int = Field(default=1024, ge=1, description="Prompts in one SubmitPrompts request.")
    max_prompt_tokens: int = Field(
        default=1024, ge=0, description="Tokens of a prompt after the model's chat template is applied; 0 = no check. "
        "A prompt must also leave room for rollout.max_new_tokens in the model's context, checked in any case."
    )
    max_messages: int = Field(default=64, ge=1, description="Chat messages in one prompt.")
    max_chat_message_bytes: int = Field(default=64 * KIB, ge=1, description="Bytes of one chat message's content.")
    max_answer_bytes: int = Field(default=64 * KIB, ge=1, description="Bytes of a prompt's reference answer.")
    max_code_bytes: int = Field(
        default=1 * MIB, ge=1, description="Bytes of a prompt's code tests: test_code plus every io case together."
    )
    max_rewards_per_prompt: int = Field(default=8, ge=1, description="Reward specs in one prompt.")
    max_metadata_pairs: int = Field(default=32, ge=0, description="Metadata key/value pairs in one prompt.")
    max_metadata_bytes: int = Field(default=1 * KIB, ge=1, description="Bytes of one metadata key, and of one value.")
    max_id_bytes: int = Field(default=256, ge=1, description="Bytes of a prompt id (printable ASCII).")
    max_request_id_bytes: int = Field(default=128, ge=1, description="Bytes of a request_id.")
    max_queue_depth: int = Field(default=100_000, ge=1, description="Prompts waiting in the queue at most.")
    retry_after_seconds: float = Field(
        default=5.0, gt=0, description="The delay a client is told to wait (RetryInfo) when the queue is full."
    )
    max_watch_streams: int = Field(
        default=48,
        ge=1,
        description="WatchSteps streams open at once. Each holds one of server.max_workers' handler threads "
        "while it is open, so this must be less than max_workers: the rest stay free for the other RPCs "
        "and health checks. One more stream is refused with RESOURCE_EXHAUSTED and a retry delay.",
    )


class AuthSettings(SettingsModel):
    """Bearer-token auth. Off when `tokens_file` is unset (every RPC is open)."""

    tokens_file: PathText | None = Field(
        default=None,
        description="YAML file `tokens: [{name, token_sha256 | token, roles: [submit, read, admin]}]`; "
        "re-read when it changes. Unset = auth off.",
    )
    reload_interval_seconds: float = Field(
        default=1.0, ge=0, description="How often, at most, the tokens file is checked for changes."
    )
