"""The seccomp filter every sandboxed program runs under.

An allow-list of the syscalls CPython needs would be tighter, but it breaks as glibc and CPython change;
like Docker's and Flatpak's default profiles this is a deny-list of the kernel surfaces that untrusted
code has no business touching: tracing other processes, mounting, loading kernels/modules/BPF,
namespaces, keyrings, personality tricks, perf, io_uring (which would bypass this filter), the kinds
of memory that escape RLIMIT_AS (SysV IPC, memfd) and every socket family except AF_UNIX. Denied calls fail with EPERM rather than killing the process, so the
program sees an ordinary OSError and the test harness can report it.

The filter is exported as classic BPF and handed to bubblewrap with ``--seccomp FD``; bubblewrap
installs it (with no_new_privs) right before it executes the program.
"""

from __future__ import annotations

import errno
import socket
import tempfile

import pyseccomp as seccomp

# Syscalls refused outright. Names unknown to the running libseccomp are skipped (see build_filter).
DENIED_SYSCALLS: tuple[str, ...] = (
    # other processes' memory and tracing
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # file systems and namespaces
    "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns", "mount_setattr",
    "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "quotactl", "quotactl_fd",
    # the kernel itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "userfaultfd", "lookup_dcookie", "syslog", "reboot", "swapon", "swapoff",
    "acct", "iopl", "ioperm", "vhangup", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname",
    # keyrings and execution-domain tricks
    "keyctl", "add_key", "request_key", "personality",
    # io_uring performs I/O that seccomp never sees
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # memory that RLIMIT_AS does not count: a SysV shared memory segment holds its pages once detached
    # (and the run's fresh IPC namespace has the kernel's unbounded defaults), message queues and
    # semaphore sets hold theirs in the kernel, and a memfd written to and never mapped holds its pages
    # while open (16 MiB each under RLIMIT_FSIZE, 64 of them). CPython uses none of them (its
    # multiprocessing uses POSIX shared memory: the size-capped /dev/shm); the service makes the run's
    # memfds outside the sandbox.
    "shmget", "shmat", "msgget", "msgsnd", "semget", "memfd_create",
)

# clone flags that create namespaces; bubblewrap has already placed the program in its own.
_NAMESPACE_FLAGS: tuple[int, ...] = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)


def build_filter() -> seccomp.SyscallFilter:
    """Build the sandbox's syscall filter (default: allow; the deny-list above: EPERM).

    Non-native architectures (32-bit ``int 0x80`` calls on x86-64) are killed by libseccomp's
    default bad-architecture action, so the deny-list cannot be side-stepped through another ABI.
    """
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    eperm = seccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            flt.add_rule(eperm, name)
        except (ValueError, OSError):
            continue  # a syscall this kernel/libseccomp does not know cannot be called either
    # Sockets: only AF_UNIX (Python's multiprocessing and some stdlib modules use socketpair).
    for call in ("socket", "socketpair"):
        flt.add_rule(eperm, call, seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
    # clone3 takes its flags through a pointer a filter cannot read: answer ENOSYS so that glibc falls
    # back to clone, whose flags are checked.
    flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # One rule per namespace flag: rules for one syscall are OR-ed, so any such bit is refused.
    for bit in _NAMESPACE_FLAGS:
        flt.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, bit, bit))
    return flt


def export_bpf() -> bytes:
    """The filter as a classic BPF program (the format ``bwrap --seccomp FD`` reads)."""
    with tempfile.TemporaryFile() as fh:
        build_filter().export_bpf(fh)
        fh.seek(0)
        return fh.read()
