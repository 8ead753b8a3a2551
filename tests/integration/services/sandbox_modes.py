"""The ways the code sandbox service runs, for running the same attacks against each.

- ``root``: the service as root (each concurrent run also gets its own host uid, 61000 + slot).
- ``uid10001``: the service as uid/gid 10001 with no capabilities and no_new_privs, as the Helm chart
  runs it (``runAsUser: 10001``, ``capabilities.drop: [ALL]``, ``allowPrivilegeEscalation: false``),
  with a fresh /proc in the sandbox: the chart with ``rewards.code.unmaskedProc: true``.
- ``uid10001-masked-proc``: the same in a mount namespace whose /proc is masked the way the container
  runtime masks it for Kubernetes' default ``procMount`` (runc's masked and read-only paths); the
  kernel then refuses an unprivileged proc mount, so the service runs with ``--no-proc``: the chart's
  default.

The uid 10001 modes need root to drop to that uid (``setpriv``); run by a non-root user, the only mode
is ``self`` (the service as that user, fresh /proc). As uid 10001 the service runs on the system
interpreter (``/usr/bin/python3``, same minor version) with this checkout and the virtualenv's
site-packages on ``PYTHONPATH``: the virtualenv's own interpreter may live in a directory that user
cannot enter (pyenv under /root here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field

import pytest
from reward_service_kit import REPO, EntryPoint

NONROOT_UID = 10001
SYSTEM_PYTHON = "/usr/bin/python3"
# runc's defaults (containerd, CRI-O): what a container's /proc hides unless procMount is Unmasked.
MASKED_PROC = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
               "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
               "/proc/scsi")
READONLY_PROC = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True)
class Mode:
    """How to start the service: `launcher` before the interpreter, `python`, extra service flags."""

    name: str
    uid: int
    launcher: tuple[str, ...] = ()
    python: str = sys.executable
    flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    proc_in_sandbox: bool = True


def _mask_proc_script() -> str:
    """Shell commands masking /proc as the container runtime does (files: /dev/null over them;
    directories: an empty read-only tmpfs; the read-only list: read-only bind mounts)."""
    lines = []
    for path in MASKED_PROC:
        lines.append(f"if [ -d {path} ]; then mount -t tmpfs -o ro tmpfs {path}; "
                     f"elif [ -e {path} ]; then mount --bind /dev/null {path}; fi")
    for path in READONLY_PROC:
        lines.append(f"if [ -e {path} ]; then mount --bind {path} {path} && mount -o remount,bind,ro {path}; fi")
    return "set -e; " + "; ".join(lines) + '; exec "$@"'


def _nonroot(name: str, *, masked_proc: bool) -> Mode:
    setpriv = ("/usr/bin/setpriv", f"--reuid={NONROOT_UID}", f"--regid={NONROOT_UID}", "--clear-groups",
               "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--")
    mask = ("/usr/bin/unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _mask_proc_script(),
            "sh") if masked_proc else ()
    paths = [str(REPO), str(REPO / "services"), str(REPO / "clients/python"), str(REPO / "gen/python"),
             sysconfig.get_paths()["purelib"]]
    env = {"PYTHONPATH": os.pathsep.join(paths), "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "HOME": "/tmp"}
    return Mode(name, NONROOT_UID, (*mask, *setpriv), SYSTEM_PYTHON, ("--no-proc",) if masked_proc else (), env,
                proc_in_sandbox=not masked_proc)


def _system_python_matches() -> bool:
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except OSError:
        return False
    return out == str(sys.version_info[:2])


def modes() -> list[object]:
    """The modes as pytest params (a uid 10001 mode is skipped, with the reason, where it cannot run)."""
    if os.geteuid() != 0:
        return [pytest.param(Mode("self", os.geteuid()), id="self")]
    params: list[object] = [pytest.param(Mode("root", 0), id="root")]
    skip = [] if _system_python_matches() else [pytest.mark.skip(
        reason=f"{SYSTEM_PYTHON} is not Python {sys.version_info[0]}.{sys.version_info[1]}: cannot run the "
               "service as uid 10001 with this virtualenv's packages")]
    for name, masked in (("uid10001", False), ("uid10001-masked-proc", True)):
        params.append(pytest.param(_nonroot(name, masked_proc=masked), id=name, marks=skip))
    return params


def mode_named(name: str) -> Mode:
    """One mode by its id, for a test of its own; skips (with the reason) where it cannot run here."""
    for param in modes():
        if param.id == name:  # type: ignore[attr-defined]
            for mark in param.marks:  # type: ignore[attr-defined]
                if mark.name == "skip":
                    pytest.skip(mark.kwargs["reason"])
            return param.values[0]  # type: ignore[attr-defined, no-any-return]
    pytest.skip(f"mode {name} needs root (to drop to uid {NONROOT_UID})")


def start(mode: Mode, *args: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> EntryPoint:
    """The code sandbox service (`python -m grpo_rewards.code_sandbox.server`) started in `mode`."""
    return EntryPoint("grpo_rewards.code_sandbox.server", *args, *mode.flags, timeout=timeout,
                      env={**mode.env, **(env or {})}, launcher=mode.launcher, python=mode.python)
