"""Opening a store that cannot be used fails at once with an error that says what to do, and a store
moved to another path resumes from its own checkpoints. Real SQLite files in temp dirs."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from grpo_server.store import Store, StoreError
from grpo_server.store.sqlite_store import FILENAME
from grpo_server.types import ChatMessage, PromptRecord, RewardSpec


def rec(pid: str) -> PromptRecord:
    return PromptRecord(id=pid, messages=(ChatMessage("user", f"What is {pid}? " + "x" * 200),),
                        rewards=(RewardSpec("math", 1.0),), answer="42")


def store_with_prompts(directory: Path, n: int) -> None:
    s = Store(directory)
    s.submit([rec(f"p{i}") for i in range(n)], None, 10**9)
    s.close()


def as_nobody(fn: Callable[[], str]) -> str:
    """fn() in a forked child without root's power to write anything (uid 65534 when run as root, where
    file modes stop nothing); returns what it returned."""
    if os.geteuid() != 0:
        return fn()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgid(65534)
            os.setuid(65534)
            out = fn()
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            out = f"{type(exc).__name__}: {exc}"
        os.write(write, out.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def open_error(directory: Path) -> str:
    try:
        Store(directory).close()
    except StoreError as exc:
        return f"StoreError: {exc}"
    return "opened"


def test_a_store_with_a_damaged_page_is_refused_at_open_not_in_the_middle_of_a_run(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    store_with_prompts(directory, 3000)
    path = directory / FILENAME
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = b"\x55" * 8192  # two pages of the prompts table overwritten
    path.write_bytes(bytes(data))
    before = path.read_bytes()

    with pytest.raises(StoreError) as refused:
        Store(directory)
    message = str(refused.value)
    assert str(path) in message and "malformed" in message, message
    assert "restore it from a backup" in message, message
    assert path.read_bytes() == before  # left as it was found


@pytest.mark.parametrize("what", ["file", "directory"])
def test_a_store_the_trainer_may_not_write_says_so_rather_than_calling_it_damaged(what: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="grpo-store-perm-"))  # pytest's tmp_path is closed to other users
    os.chmod(base, 0o755)
    directory = base / "store"
    store_with_prompts(directory, 2)
    if what == "file":
        os.chmod(directory, 0o777)
        os.chmod(directory / FILENAME, 0o444)
    else:
        os.chmod(directory / FILENAME, 0o666)
        os.chmod(directory, 0o555)
    try:
        message = as_nobody(lambda: open_error(directory))
        assert message.startswith("StoreError: "), message
        assert "readonly" in message and "permissions" in message and "read-only" in message, message
        assert "damaged" not in message and "backup" not in message, message
        os.chmod(directory, 0o755)
        s = Store(directory)  # nothing was changed: the owner opens it as before
        assert s.queue_depth() == 2
        s.close()
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(base)


@pytest.mark.parametrize("relative", [False, True])
def test_a_moved_store_resumes_from_its_own_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        relative: bool) -> None:
    monkeypatch.chdir(tmp_path)
    old = Path("runs/a") if relative else tmp_path / "runs" / "a"  # the default store_dir is relative
    s = Store(old)
    s.submit([rec("p0")], None, 10)
    s.lease(1, step=1)
    ckpt = old / "checkpoints" / "step-000001"
    ckpt.mkdir(parents=True)
    s.commit_checkpoint(1, str(ckpt))
    s.close()

    new = tmp_path / "restored" / "b"
    shutil.copytree(old, new)  # a backup restored elsewhere, a volume mounted at another path
    shutil.rmtree(old)
    monkeypatch.chdir("/")
    s = Store(new)
    latest = s.latest_checkpoint()
    s.close()
    assert latest is not None and latest.step == 1
    assert Path(latest.path) == new / "checkpoints" / "step-000001" and Path(latest.path).is_dir()
