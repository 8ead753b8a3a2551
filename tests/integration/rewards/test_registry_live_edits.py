"""The registry file edited on a live trainer the ways editors, tools and Kubernetes edit files, and
backends swapped many times: what is served, what is logged, and that old channels are closed."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from scripted_backends import ScriptedBackend, Servers, group, ok

from grpo.reward.v1 import reward_pb2_grpc
from grpo_server.rewards.registry import BackendEntry, RegistryError, RewardRegistry, parse_registry
from grpo_server.rewards.router import RewardRouter


def addresses(reg: RewardRegistry) -> dict[str, str]:
    return {n: e.address for n, e in reg.snapshot().entries.items()}


def wait_until(cond, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cond()


def test_a_file_read_half_written_is_not_applied_and_api_changes_survive_it(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    f.write_text("backends:\n  code: {address: 'file:2'}\n  math: {address: 'file:1'}\n")
    reg = RewardRegistry(registry_file=f)
    reg.set(BackendEntry("math", "api:1"))
    version = reg.version
    seen = []
    # An in-place rewrite that changes only `code`: open(..., "w") truncates, then two writes. The
    # watcher (settled reads) happens to read between them.
    with f.open("w") as out:
        reg.reload_if_changed(settled=True)
        seen.append(addresses(reg))
        out.write("backends:\n  code: {address: 'file:3'}\n")
        out.flush()
        reg.reload_if_changed(settled=True)
        seen.append(addresses(reg))
        out.write("  math: {address: 'file:1'}\n")
    for _ in range(2):
        reg.reload_if_changed(settled=True)
        seen.append(addresses(reg))
    assert all(s["math"] == "api:1" for s in seen), seen  # never emptied, the API change never dropped
    assert addresses(reg) == {"code": "file:3", "math": "api:1"}
    assert reg.version == version + 1


def test_an_api_change_made_after_a_file_edit_is_not_overruled_by_it(tmp_path: Path) -> None:
    """The rule: an API change holds until the file changes that name again. An edit written before the
    API change is older, even when the watcher applies it after (it applies new content on its second
    read, or has not read it yet); an edit written after the API change overrules it."""
    f = tmp_path / "registry.yaml"
    f.write_text("backends:\n  math: {address: 'file:1'}\n  code: {address: 'file:1'}\n")
    reg = RewardRegistry(registry_file=f)
    # Read once by the watcher (held back to see that it holds still), then the API change, then applied.
    f.write_text("backends:\n  math: {address: 'file:2'}\n  code: {address: 'file:1'}\n")
    assert not reg.reload_if_changed(settled=True)
    reg.set(BackendEntry("math", "api:9"))
    reg.reload_if_changed(settled=True)
    assert addresses(reg) == {"math": "api:9", "code": "file:1"}
    # Written before the API change, not yet read by the watcher when it was made.
    f.write_text("backends:\n  math: {address: 'file:2'}\n  code: {address: 'file:2'}\n")
    time.sleep(0.1)  # past the slack given to the file's modification time
    reg.set(BackendEntry("code", "api:8"))
    for _ in range(2):
        reg.reload_if_changed(settled=True)
    assert addresses(reg) == {"math": "api:9", "code": "api:8"}
    # Written after: the file's word is back.
    f.write_text("backends:\n  math: {address: 'file:3'}\n  code: {address: 'file:2'}\n")
    for _ in range(2):
        reg.reload_if_changed(settled=True)
    assert addresses(reg) == {"math": "file:3", "code": "api:8"}


def test_an_api_change_that_stood_over_a_file_edit_stands_after_a_restart(tmp_path: Path) -> None:
    """The API change kept over an older edit remembered the file's entry from before that edit: a plain
    restart (same file, store and flags) saw the file "changed since" and dropped it."""
    from grpo_server.store import Store

    f = tmp_path / "registry.yaml"
    f.write_text("backends:\n  math: {address: 'file:1'}\n")
    store = Store(tmp_path / "store")
    reg = RewardRegistry(registry_file=f)
    reg.attach_store(store)
    f.write_text("backends:\n  math: {address: 'file:2'}\n")
    assert not reg.reload_if_changed(settled=True)  # read once, held back
    time.sleep(0.1)
    reg.set(BackendEntry("math", "api:9"))
    reg.reload_if_changed(settled=True)  # the older edit applied after the API change: it stands
    assert addresses(reg) == {"math": "api:9"}
    reg.stop()
    store.close()
    store = Store(tmp_path / "store")
    try:
        again = RewardRegistry(registry_file=f)
        again.attach_store(store)
        assert addresses(again) == {"math": "api:9"}
        again.stop()
    finally:
        store.close()


def test_an_api_change_made_after_a_file_edit_the_watcher_had_not_applied_stands_after_a_restart(
        tmp_path: Path) -> None:
    """The trainer stopped after the API answered and before the watcher applied the older edit: the
    restart saw the file "changed since" the API change and dropped it, although the edit was written
    before it (a live trainer keeps it). A file edited after the API change still overrules it."""
    from grpo_server.store import Store

    f = tmp_path / "registry.yaml"
    f.write_text("backends:\n  math: {address: 'file:1'}\n")
    for edit_after, expected in ((False, ("api:9", "api")), (True, ("file:3", "registry_file"))):
        store = Store(tmp_path / f"store-{edit_after}")
        reg = RewardRegistry(registry_file=f)
        reg.attach_store(store)
        f.write_text("backends:\n  math: {address: 'file:2'}\n")  # not read before the API change
        time.sleep(0.1)
        reg.set(BackendEntry("math", "api:9"))
        reg.stop()  # the process ends here (kill -9: the store holds what the API answered)
        store.close()
        if edit_after:
            time.sleep(0.1)
            f.write_text("backends:\n  math: {address: 'file:3'}\n")
        store = Store(tmp_path / f"store-{edit_after}")
        try:
            again = RewardRegistry(registry_file=f)
            again.attach_store(store)
            entry = again.snapshot().entries["math"]
            assert (entry.address, entry.source) == expected, edit_after
            again.stop()
        finally:
            store.close()
        f.write_text("backends:\n  math: {address: 'file:1'}\n")


def test_a_file_edit_does_not_undo_an_api_change_to_a_name_a_flag_gives(tmp_path: Path) -> None:
    """The flag beats the file: an edit of that name dropped the API change and put the flag's entry back,
    the file's edit itself having no effect."""
    f = tmp_path / "registry.yaml"
    f.write_text("backends:\n  math: {address: 'file:1'}\n")
    reg = RewardRegistry(registry_file=f, overrides=[BackendEntry("math", "flag:1", source="flag")])
    reg.set(BackendEntry("math", "api:1"))
    time.sleep(0.1)
    f.write_text("backends:\n  math: {address: 'file:2'}\n")
    for _ in range(2):
        reg.reload_if_changed(settled=True)
    assert addresses(reg) == {"math": "api:1"}


@pytest.mark.parametrize("value", ["[]", "false", "0", "''"])
def test_backends_that_is_not_a_mapping_is_refused_not_an_empty_registry(tmp_path: Path, value: str) -> None:
    with pytest.raises(RegistryError, match="backends: must map backend names to settings"):
        parse_registry(f"backends: {value}\n")
    assert parse_registry("backends:\n") == {} and parse_registry("backends: {}\n") == {}
    # On a live trainer such an edit is logged and the registry, API changes included, kept.
    f = tmp_path / "registry.yaml"
    f.write_text("backends:\n  math: {address: 'file:1'}\n  code: {address: 'file:2'}\n")
    reg = RewardRegistry(registry_file=f)
    reg.set(BackendEntry("math", "api:9"))
    f.write_text(f"backends: {value}\n")
    for _ in range(2):
        reg.reload_if_changed(settled=True)
    assert addresses(reg) == {"math": "api:9", "code": "file:2"}


@pytest.mark.parametrize(("key", "read_as"), [("010", "int 8"), ("0x1f", "int 31"), ("on", "bool True"), ("1.5", "float 1.5")])
def test_a_backend_name_yaml_reads_as_a_number_or_a_flag_is_refused(key: str, read_as: str) -> None:
    """YAML 1.1 types unquoted keys: `010:` became the backend "8" with no error, and `8:` beside it was one
    backend (the config file refuses such keys)."""
    with pytest.raises(RegistryError) as err:
        parse_registry(f"backends:\n  {key}: {{address: 'h:1'}}\n")
    assert f"a backend name must be text, but YAML reads this key as {read_as}: put it in quotes" in str(err.value)
    assert list(parse_registry(f"backends:\n  '{key.replace('.', '-')}': {{address: 'h:1'}}\n")) == [key.replace(".", "-")]


def test_a_name_given_twice_in_the_file_is_an_error_naming_it_and_both_lines() -> None:
    with pytest.raises(RegistryError) as err:
        parse_registry("backends:\n  math: {address: 'a:1'}\n  math: {address: 'b:2'}\n", "registry.yaml")
    assert "backends.math: given twice (lines 2 and 3)" in str(err.value)
    with pytest.raises(RegistryError, match=r"backends\.math\.address: given twice"):
        parse_registry("backends:\n  math: {address: 'a:1', address: 'b:2'}\n")


def test_every_kind_of_bad_edit_is_logged_once_keeps_the_registry_and_the_next_good_file_applies(
    tmp_path: Path, caplog
) -> None:
    f = tmp_path / "registry.yaml"
    good = "backends:\n  math: {address: 'a:1'}\n"
    f.write_text(good)
    reg = RewardRegistry(registry_file=f)
    reg.start_watching(interval_s=0.02)
    caplog.set_level(logging.INFO, logger="grpo_server.rewards.registry")
    try:
        for bad, words in [
            (None, "unreadable"),  # deleted
            ("backends: {math: {address: 'a:1'}\n", "not valid YAML"),
            ("backends:\n  math: {address: 'nope'}\n", "backends.math.address"),
            ("backends:\n  math: {address: 'a:1'}\n  math: {address: 'b:2'}\n", "given twice"),
        ]:
            caplog.clear()
            if bad is None:
                f.unlink()
            else:
                f.write_text(bad)
            wait_until(lambda words=words: any(words in r.getMessage() for r in caplog.records))
            time.sleep(0.3)  # fifteen more polls
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and words in errors[0].getMessage(), [r.getMessage() for r in errors]
            assert addresses(reg) == {"math": "a:1"} and reg.version == 1
            f.write_text(good)  # back to the content in force: no change, no new version
            time.sleep(0.1)
            assert reg.version == 1
        f.write_text("backends:\n  math: {address: 'b:2'}\n")
        wait_until(lambda: addresses(reg) == {"math": "b:2"})
        assert reg.version == 2
    finally:
        reg.stop()


def test_a_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    # The kubelet's layout: registry.yaml -> ..data/registry.yaml, ..data -> ..<timestamp>; an update
    # writes a new timestamped directory and renames a new ..data link over the old one.
    (tmp_path / "..2026_01").mkdir()
    (tmp_path / "..2026_01" / "registry.yaml").write_text("backends:\n  math: {address: 'a:1'}\n")
    os.symlink("..2026_01", tmp_path / "..data")
    os.symlink("..data/registry.yaml", tmp_path / "registry.yaml")
    reg = RewardRegistry(registry_file=tmp_path / "registry.yaml")
    reg.start_watching(interval_s=0.02)
    try:
        (tmp_path / "..2026_02").mkdir()
        (tmp_path / "..2026_02" / "registry.yaml").write_text("backends:\n  math: {address: 'b:2'}\n")
        os.symlink("..2026_02", tmp_path / "..data_tmp")
        os.rename(tmp_path / "..data_tmp", tmp_path / "..data")
        (tmp_path / "..2026_01" / "registry.yaml").unlink()
        (tmp_path / "..2026_01").rmdir()
        wait_until(lambda: addresses(reg) == {"math": "b:2"})
        assert reg.version == 2
    finally:
        reg.stop()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def port_on_every_loopback() -> Iterator[int]:
    """One backend (scoring 1.0) on every loopback address: 127.0.0.N:PORT is a new address for each swap."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    reward_pb2_grpc.add_RewardServiceServicer_to_server(ScriptedBackend(ok(1.0)), server)
    port = server.add_insecure_port("0.0.0.0:0")
    server.start()
    yield port
    server.stop(grace=None)


def test_swapping_a_backends_address_200_times_closes_the_old_channels(port_on_every_loopback: int) -> None:
    port = port_on_every_loopback
    reg = RewardRegistry([BackendEntry("a", f"127.0.0.1:{port}")])
    router = RewardRouter(reg)
    try:
        g = group("p", ["x", "y"])
        router.score([g], reg.snapshot())
        reg.list()  # the listing's Describe channel too
        threads, fds = threading.active_count(), _open_fds()
        for i in range(200):
            reg.set(BackendEntry("a", f"127.0.0.{2 + i}:{port}"))
            [scored] = router.score([g], reg.snapshot())
            assert [c.reward for c in scored.completions] == [1.0, 1.0]
            reg.list()
        assert threading.active_count() <= threads + 2
        assert _open_fds() <= fds + 10, f"{_open_fds() - fds} more fds after 200 swaps"
    finally:
        router.close()
        reg.stop()


def test_replacing_a_backend_by_a_new_name_200_times_closes_the_deleted_names_channels(
        port_on_every_loopback: int) -> None:
    # DeleteRewardBackend of the old name and SetRewardBackend of a new one, the way a model is replaced:
    # nothing asks for a deleted name again, so its channel must be let go without that.
    port = port_on_every_loopback
    reg = RewardRegistry([BackendEntry("rm-0", f"127.0.0.1:{port}")])
    router = RewardRouter(reg)
    try:
        router.score([group("p", ["x"], rewards=[("rm-0", 1.0)])], reg.snapshot())
        reg.list()
        fds = _open_fds()
        for i in range(1, 201):
            reg.set(BackendEntry(f"rm-{i}", f"127.0.0.{1 + i}:{port}"))
            reg.delete(f"rm-{i - 1}")
            [scored] = router.score([group("p", ["x"], rewards=[(f"rm-{i}", 1.0)])], reg.snapshot())
            assert scored.completions[0].reward == 1.0
            reg.list()
        assert router._pool.open_channels == 1 and reg._describer_pool.open_channels == 1
        assert _open_fds() <= fds + 10, f"{_open_fds() - fds} more fds after 200 replacements"
    finally:
        router.close()
        reg.stop()


def test_a_call_in_flight_on_the_old_address_during_a_swap_finishes_there(servers: Servers) -> None:
    old = ScriptedBackend(ok(1.0), delay_s=30)
    new = ScriptedBackend(ok(2.0))
    reg = RewardRegistry([BackendEntry("a", servers.start(old))])
    router = RewardRouter(reg)
    try:
        first = reg.snapshot()
        result: list = []
        step = threading.Thread(target=lambda: result.extend(router.score([group("p", ["x"])], first)))
        step.start()
        wait_until(lambda: old.in_flight == 1)
        reg.set(BackendEntry("a", servers.start(new)))
        [scored] = router.score([group("q", ["x"])], reg.snapshot())  # the next step, on the new channel
        assert scored.completions[0].reward == 2.0
        old._release.set()
        step.join(10)
        assert result[0].completions[0].reward == 1.0  # finished on the old channel, not cancelled
    finally:
        router.close()
        reg.stop()


def test_a_token_rotated_by_a_secret_symlink_swap_is_sent_on_the_next_call(servers: Servers, tmp_path: Path) -> None:
    (tmp_path / "..v1").mkdir()
    (tmp_path / "..v1" / "token").write_text("first\n")
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/token", tmp_path / "token")
    a = ScriptedBackend(ok(1.0))
    reg = RewardRegistry([BackendEntry("a", servers.start(a), token_file=str(tmp_path / "token"))])
    router = RewardRouter(reg)
    try:
        router.score([group("p", ["x"])], reg.snapshot())
        (tmp_path / "..v2").mkdir()
        (tmp_path / "..v2" / "token").write_text("second\n")
        os.symlink("..v2", tmp_path / "..data_tmp")
        os.rename(tmp_path / "..data_tmp", tmp_path / "..data")
        router.score([group("p", ["x"])], reg.snapshot())
        assert [m["authorization"] for m in a.metadata] == ["Bearer first", "Bearer second"]
    finally:
        router.close()
        reg.stop()


def test_files_an_entry_names_are_checked_refused_at_start_and_logged_on_reload(tmp_path: Path, caplog) -> None:
    f = tmp_path / "registry.yaml"
    f.write_text(f"backends:\n  judge: {{address: 'j:1', tls: true, ca_file: '{tmp_path}/ca.pem'}}\n")
    with pytest.raises(RegistryError) as err:
        RewardRegistry(registry_file=f)
    assert [(v.field, "No such file" in v.description) for v in err.value.violations] == [("backends.judge.ca_file", True)]
    assert str(f) in str(err.value)
    with pytest.raises(RegistryError) as err:
        RewardRegistry([BackendEntry("math", "m:1", token_file=str(tmp_path / "token"))])
    assert [v.field for v in err.value.violations] == ["rewards.backends.math.token_file"]
    (tmp_path / "token").write_text("\n")
    with pytest.raises(RegistryError, match="rewards.backends.math.token_file: token file .* is empty"):
        RewardRegistry([BackendEntry("math", "m:1", token_file=str(tmp_path / "token"))])

    # A reload applies the entry (the certificate may come with the next Secret update) and says what fails.
    f.write_text("backends:\n  judge: {address: 'j:1'}\n")
    reg = RewardRegistry(registry_file=f)
    f.write_text(f"backends:\n  judge: {{address: 'j:2', tls: true, cert_file: '{tmp_path}/c.pem', "
                 f"key_file: '{tmp_path}/k.pem'}}\n")
    with caplog.at_level(logging.ERROR, logger="grpo_server.rewards.registry"):
        assert reg.reload_if_changed()
    assert addresses(reg) == {"judge": "j:2"}
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2, logged
    assert all("backends.judge." in m and "cannot read it on the trainer" in m and "calls to judge fail" in m
               for m in logged), logged
