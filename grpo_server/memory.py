"""Running out of memory, told apart from other errors, and what is released before trying again smaller.

The trainer helps itself where a smaller piece of the same work gives the same result: a training pass
runs again in micro-batches of half the size (training/loop.py), an HF rollout generates half as many
prompts a call (rollout/hf.py). Both recognise the failure with `out_of_memory` and call `release` before
the next try.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import torch

from grpo_server.malloc import trim

# How torch and the OS say an allocation failed: CUDA's "CUDA out of memory", torch's CPU allocator's
# "DefaultCPUAllocator: can't allocate memory", ENOMEM's "Cannot allocate memory".
_OUT_OF_MEMORY_TEXTS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from or while handling (as its traceback shows them)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ if cur.__cause__ is not None else None if cur.__suppress_context__ else cur.__context__


def out_of_memory(exc: BaseException) -> bool:
    """True when `exc` or what it was raised from says memory ran out (on the GPU or the host)."""
    return any(isinstance(e, (MemoryError, torch.OutOfMemoryError))
               or any(t in str(e).lower() for t in _OUT_OF_MEMORY_TEXTS) for e in exception_chain(exc))


def release() -> None:
    """Free what a failed attempt may still hold once its exception is gone: reference cycles (an autograd
    graph caught in one), the CUDA caching allocator's free blocks, the heap's free pages."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    trim()
