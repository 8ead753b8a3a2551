"""The code sandbox's settings: one frozen dataclass, validated once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

ScoringMode = Literal["fraction", "all_or_nothing"]

# A run's stdout or stderr beyond max_output_bytes is read and dropped (a right program that prints a lot,
# debug lines in a loop, passes its asserts) until it reaches this many times max_output_bytes (16 MiB at
# the default): then the run is a flood and is stopped at once rather than at its timeout.
FLOOD_OUTPUT_FACTOR = 256


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and knobs of the sandbox. Every default works on a laptop.

    Times are seconds, sizes bytes unless the name says MiB.
    """

    workers: int = 2                      # programs running at once
    scoring: ScoringMode = "fraction"     # score = passed/total, or 1.0 only when all pass
    default_timeout_s: float = 10.0       # wall clock for all tests of an item when it sets none
    max_timeout_s: float = 60.0           # larger per-item timeouts are clamped to this
    memory_mib: int = 512                 # RLIMIT_AS of every process in the sandbox
    # stdout (and stderr) kept of a run; the rest is read and dropped, up to FLOOD_OUTPUT_FACTOR times as
    # much, where the run is stopped. An io case's program is stopped at the cap itself (its stdout is judged).
    max_output_bytes: int = 64 * 1024
    python: str = "/usr/bin/python3"      # the interpreter inside; must live under /usr
    bwrap: str = "/usr/bin/bwrap"
    tmp_mib: int = 64                     # size of the tmpfs work dir (/tmp) inside
    max_processes: int = 32               # RLIMIT_NPROC of one run (its own user namespace)
    max_open_files: int = 64              # RLIMIT_NOFILE
    max_file_mib: int = 16                # RLIMIT_FSIZE
    feedback_bytes: int = 2048            # feedback is trimmed to this
    # An item's tests (test_code plus every io case's stdin and expected stdout, UTF-8): larger ones are
    # INVALID_INPUT before anything is compiled or run. The trainer's own limits.max_code_bytes.
    max_code_bytes: int = 1024 * 1024
    # Each concurrent run gets its own host uid (uid_base + slot) when the service runs as root, so
    # that RLIMIT_NPROC counts only that run's processes.
    uid_base: int = 61000
    kill_grace_s: float = 1.0             # beyond the item timeout before the host kills the sandbox
    # A fresh /proc (of the sandbox's own pid namespace). The kernel refuses that mount to an
    # unprivileged user when the container's /proc has masked paths (Kubernetes' default procMount);
    # there the sandbox runs with no /proc at all.
    mount_proc: bool = True

    @property
    def flood_output_bytes(self) -> int:
        """The stdout (or stderr) of a run past which it is stopped as a flood (see max_output_bytes)."""
        return self.max_output_bytes * FLOOD_OUTPUT_FACTOR

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        checks = [
            (self.workers >= 1, "--workers must be at least 1"),
            (self.scoring in ("fraction", "all_or_nothing"), "--scoring must be fraction or all_or_nothing"),
            (0 < self.default_timeout_s <= self.max_timeout_s,
             "--default-timeout must be > 0 and at most --max-timeout"),
            (self.memory_mib >= 64, "--memory-mb must be at least 64 (the interpreter needs ~30 MiB)"),
            (self.max_output_bytes >= 1024, "--max-output-bytes must be at least 1024"),
            (os.path.isabs(self.python) and self.python.startswith("/usr/"),
             "--python must be an absolute path under /usr (only /usr is mounted in the sandbox)"),
            (self.tmp_mib >= 1, "--tmp-mb must be at least 1"),
            (self.max_code_bytes >= 1, "--max-code-bytes must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
