"""The reward registry: the YAML file reloaded on change, layers and their precedence, snapshots,
validation errors, and what Describe says about each backend."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from scripted_backends import ScriptedBackend, Servers, group, ok

from grpo.reward.v1 import reward_pb2
from grpo_server.rewards.registry import BackendEntry, RegistryError, RewardRegistry, parse_registry
from grpo_server.rewards.router import RewardRouter
from grpo_server.types import RewardStatus


def write(path: Path, text: str) -> None:
    path.write_text(text)


def test_the_file_is_read_with_every_field(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    token = tmp_path / "token"
    token.write_text("t\n")  # read at start: an entry naming a file the trainer cannot read is refused
    write(f, f"""
backends:
  math:
    address: "math-verifier:50051"
    timeout_seconds: 12.5
    max_batch_size: 16
    max_concurrency: 2
    tls: true
    token_file: {token}
  code: {{address: "10.0.0.7:7000"}}
""")
    reg = RewardRegistry(registry_file=f)
    snap = reg.snapshot()
    assert snap.version == 1
    assert snap.entries["math"] == BackendEntry("math", "math-verifier:50051", 12.5, 16, 2, True, str(token),
                                                "registry_file")
    assert snap.entries["code"] == BackendEntry("code", "10.0.0.7:7000", source="registry_file")
    assert list(snap.entries) == ["code", "math"]  # sorted by name


def test_a_changed_file_is_seen_by_the_next_snapshot_and_old_snapshots_stay_as_they_were(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    write(f, "backends:\n  math: {address: 'old:1'}\n")
    reg = RewardRegistry(registry_file=f)
    before = reg.snapshot()
    assert reg.reload_if_changed() is False  # nothing changed yet

    write(f, "backends:\n  math: {address: 'new:2'}\n  rm: {address: 'rm:3'}\n")
    assert reg.reload_if_changed() is True
    after = reg.snapshot()
    assert after.version == before.version + 1
    assert after.entries["math"].address == "new:2" and "rm" in after.entries
    assert before.entries["math"].address == "old:1" and "rm" not in before.entries
    with pytest.raises(TypeError):
        after.entries["x"] = after.entries["rm"]  # type: ignore[index]


def test_rewriting_the_same_content_is_not_a_change(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    write(f, "backends:\n  math: {address: 'a:1'}\n")
    reg = RewardRegistry(registry_file=f)
    write(f, "backends:\n  math: {address: 'a:1'}\n")
    assert reg.reload_if_changed() is False
    assert reg.snapshot().version == 1


def test_a_bad_file_on_reload_is_logged_and_the_previous_registry_kept(tmp_path: Path, caplog) -> None:
    f = tmp_path / "registry.yaml"
    write(f, "backends:\n  math: {address: 'a:1'}\n")
    reg = RewardRegistry(registry_file=f)
    write(f, "backends:\n  Math!: {address: 'nope'}\n")
    with caplog.at_level(logging.ERROR):
        assert reg.reload_if_changed() is False
    assert reg.snapshot().entries["math"].address == "a:1" and reg.snapshot().version == 1
    assert "backends.Math!.name" in caplog.text and "backends.Math!.address" in caplog.text
    f.unlink()
    assert reg.reload_if_changed() is False  # a missing file also keeps the registry
    assert reg.snapshot().entries["math"].address == "a:1"
    write(f, "backends:\n  math: {address: 'b:2'}\n")
    assert reg.reload_if_changed() is True  # a good file again is taken


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("backends:\n  UPPER: {address: 'a:1'}\n", "backends.UPPER.name"),
        ("backends:\n  " + "x" * 64 + ": {address: 'a:1'}\n", "name"),
        ("backends:\n  m: {address: 'no-port'}\n", "backends.m.address"),
        ("backends:\n  m: {address: 'h:70000'}\n", "backends.m.address"),
        ("backends:\n  m: {}\n", "backends.m.address"),
        ("backends:\n  m: {address: 'a:1', timeout_seconds: 0}\n", "backends.m.timeout_seconds"),
        ("backends:\n  m: {address: 'a:1', max_batch_size: -1}\n", "backends.m.max_batch_size"),
        ("backends:\n  m: {address: 'a:1', max_concurrency: 0}\n", "backends.m.max_concurrency"),
        ("backends:\n  m: {address: 'a:1', tls: 'yes'}\n", "backends.m.tls"),
        ("backends:\n  m: {address: 'a:1', adress: 'b:2'}\n", "backends.m.adress"),
        ("servers: {}\n", "backends"),
        ("backends: [1, 2]\n", "backends"),
        ("backends: {m: {address: 'a:1'}\n", "not valid YAML"),
    ],
)
def test_invalid_registry_files_are_rejected_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(RegistryError) as err:
        parse_registry(text, "registry.yaml")
    assert field in str(err.value)


def test_a_bad_file_at_start_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    write(f, "backends:\n  m: {address: 'no-port'}\n")
    with pytest.raises(RegistryError, match="backends.m.address"):
        RewardRegistry(registry_file=f)
    with pytest.raises(RegistryError, match="cannot read"):
        RewardRegistry(registry_file=tmp_path / "missing.yaml")


def test_an_empty_file_is_an_empty_registry(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    write(f, "")
    assert dict(RewardRegistry(registry_file=f).snapshot().entries) == {}


def test_flags_override_the_file_and_the_file_overrides_the_config(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    write(f, "backends:\n  math: {address: 'file:1'}\n  code: {address: 'file:2'}\n")
    reg = RewardRegistry(
        [BackendEntry("math", "config:1"), BackendEntry("rm", "config:3")],
        registry_file=f,
        overrides=[BackendEntry("code", "flag:2")],
    )
    e = reg.snapshot().entries
    assert (e["math"].address, e["math"].source) == ("file:1", "registry_file")
    assert (e["code"].address, e["code"].source) == ("flag:2", "flag")
    assert (e["rm"].address, e["rm"].source) == ("config:3", "config")
    # A file change to a flagged name does not beat the flag.
    write(f, "backends:\n  math: {address: 'file:1'}\n  code: {address: 'file:9'}\n")
    reg.reload_if_changed()
    assert reg.snapshot().entries["code"].address == "flag:2"


def test_api_changes_win_until_the_file_changes_that_same_entry(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    write(f, "backends:\n  math: {address: 'file:1'}\n  code: {address: 'file:2'}\n")
    reg = RewardRegistry(registry_file=f)
    version, stored = reg.set(BackendEntry("math", "api:1", max_concurrency=8, source="config"))
    assert version == 2 and stored.source == "api" and stored.max_concurrency == 8
    assert reg.delete("code") == 3
    assert set(reg.snapshot().entries) == {"math"}

    # The file changes another entry: the API's changes stand.
    write(f, "backends:\n  math: {address: 'file:1'}\n  code: {address: 'file:2'}\n  rm: {address: 'file:3'}\n")
    assert reg.reload_if_changed() is True
    e = reg.snapshot().entries
    assert e["math"].address == "api:1" and "code" not in e and e["rm"].address == "file:3"

    # The file changes `math` and `code` again: its word is back in force for them.
    write(f, "backends:\n  math: {address: 'file:9'}\n  code: {address: 'file:8'}\n  rm: {address: 'file:3'}\n")
    assert reg.reload_if_changed() is True
    e = reg.snapshot().entries
    assert (e["math"].address, e["math"].source) == ("file:9", "registry_file")
    assert e["code"].address == "file:8"


def test_api_set_validates_and_delete_of_an_unknown_name_raises() -> None:
    reg = RewardRegistry()
    with pytest.raises(RegistryError) as err:
        reg.set(BackendEntry("Bad Name", "nowhere"))
    assert {v.field for v in err.value.violations} == {"backend.name", "backend.address"}
    assert isinstance(err.value, ValueError)
    with pytest.raises(KeyError):
        reg.delete("ghost")
    # A trailing newline is not part of a valid name or address (`$` alone would let it through).
    with pytest.raises(RegistryError) as err:
        reg.set(BackendEntry("math\n", "localhost:50061\n"))
    assert {v.field for v in err.value.violations} == {"backend.name", "backend.address"}
    assert reg.snapshot().version == 1


def test_invalid_config_or_flag_entries_are_rejected() -> None:
    with pytest.raises(RegistryError, match=r"--reward-backend\[0\].address"):
        RewardRegistry(overrides=[BackendEntry("math", "localhost")])


def test_the_watcher_thread_picks_up_a_change(tmp_path: Path) -> None:
    f = tmp_path / "registry.yaml"
    write(f, "backends:\n  math: {address: 'a:1'}\n")
    reg = RewardRegistry(registry_file=f)
    reg.start_watching(interval_s=0.05)
    try:
        write(f, "backends:\n  math: {address: 'b:2'}\n")
        deadline = time.monotonic() + 5
        while reg.snapshot().entries["math"].address != "b:2" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reg.snapshot().entries["math"].address == "b:2"
    finally:
        reg.stop()


def test_a_step_keeps_the_backend_of_its_snapshot_and_the_next_step_uses_the_new_one(
    tmp_path: Path, servers: Servers
) -> None:
    old = ScriptedBackend(ok(0.0))
    new = ScriptedBackend(ok(1.0))
    f = tmp_path / "registry.yaml"
    write(f, f"backends:\n  math: {{address: '{servers.start(old)}'}}\n")
    reg = RewardRegistry(registry_file=f)
    router = RewardRouter(reg)
    try:
        step_snapshot = reg.snapshot()  # the step begins
        write(f, f"backends:\n  math: {{address: '{servers.start(new)}'}}\n")
        assert reg.reload_if_changed()
        [scored] = router.score([group("p", ["x"], rewards=[("math", 1.0)])], step_snapshot)
        assert scored.rewards == [0.0] and len(old.requests) == 1 and not new.requests
        [scored] = router.score([group("p", ["x"], rewards=[("math", 1.0)])], reg.snapshot())  # next step
        assert scored.rewards == [1.0] and len(new.requests) == 1 and len(old.requests) == 1
    finally:
        router.close()
        reg.stop()


def test_a_backend_deleted_from_the_registry_masks_its_items_next_step(servers: Servers) -> None:
    reg = RewardRegistry([BackendEntry("math", servers.start(ScriptedBackend(ok(1.0))))])
    router = RewardRouter(reg)
    try:
        reg.delete("math")
        [scored] = router.score([group("p", ["x"], rewards=[("math", 1.0)])], reg.snapshot())
        assert scored.rewards == [None]
        assert scored.completions[0].scores[0].status is RewardStatus.UNKNOWN_BACKEND
    finally:
        router.close()
        reg.stop()


def test_reference_kinds_come_from_describe(servers: Servers) -> None:
    code = ScriptedBackend(ok(1.0), reference_kinds=[reward_pb2.REFERENCE_KIND_CODE])
    reg = RewardRegistry([BackendEntry("code", servers.start(code)),
                          BackendEntry("down", "127.0.0.1:1")])
    try:
        assert reg.reference_kinds("code") == {"code"}
        assert reg.reference_kinds("ghost") is None
        # Unreachable: all kinds are assumed rather than refusing prompts during an outage.
        assert reg.reference_kinds("down") == {"none", "answer", "code"}
    finally:
        reg.stop()


def test_listing_shows_descriptions_and_the_routers_breaker_states(servers: Servers) -> None:
    good = ScriptedBackend(ok(1.0), name="math-verifier", max_batch_size=32)
    reg = RewardRegistry([BackendEntry("math", servers.start(good)), BackendEntry("down", "127.0.0.1:1")])
    router = RewardRouter(reg, max_retries=0, breaker_failures=1)
    try:
        router.score([group("p", ["x"], rewards=[("down", 1.0)])], reg.snapshot())
        version, listed = reg.list()
        assert version == 1 and [b.name for b in listed] == ["down", "math"]
        down, math_ = listed
        assert down.circuit == "open" and down.description is None and down.source == "config"
        assert down.reference_kinds == ("answer", "code", "none")
        assert math_.circuit == "closed" and math_.description is not None
        assert math_.description.name == "math-verifier" and math_.description.capabilities.max_batch_size == 32
        assert math_.reference_kinds == ("answer",)
    finally:
        router.close()
        reg.stop()


def test_the_registry_implements_the_apis_backend_registry_port(servers: Servers) -> None:
    from grpo_server.api.ports import BackendInfo, BackendRegistry

    reg = RewardRegistry()
    try:
        assert isinstance(reg, BackendRegistry)
        address = servers.start(ScriptedBackend(ok(1.0), name="rm", reference_kinds=[reward_pb2.REFERENCE_KIND_NONE]))
        # The API passes BackendInfo with 0 meaning "the default".
        version, stored = reg.set(BackendInfo(name="rm", address=address, timeout_seconds=0, max_concurrency=0))
        assert version == 2
        assert (stored.timeout_seconds, stored.max_concurrency, stored.source) == (30.0, 4, "api")
        assert stored.description.name == "rm" and stored.reference_kinds == ("none",)
        assert reg.snapshot().entries["rm"].address == address
        assert reg.reference_kinds("rm") == {"none"}
    finally:
        reg.stop()


def test_a_file_that_is_not_utf8_is_refused_at_start_and_on_reload(tmp_path: Path, caplog) -> None:
    f = tmp_path / "registry.yaml"
    f.write_bytes(b"# caf\xe9\nbackends:\n  math: {address: 'a:1'}\n")
    with pytest.raises(RegistryError, match="not UTF-8 text: byte 0xe9 at offset 5"):
        RewardRegistry(registry_file=f)
    write(f, "backends:\n  math: {address: 'a:1'}\n")
    reg = RewardRegistry(registry_file=f)
    f.write_bytes(b"backends:\n  math: {address: 'b\xff:2'}\n")
    with caplog.at_level(logging.ERROR):
        assert reg.reload_if_changed() is False  # not read as 'b\ufffd:2'
    assert "not UTF-8 text" in caplog.text and reg.snapshot().entries["math"].address == "a:1"


def test_the_same_bad_edit_made_again_is_logged_again(tmp_path: Path, caplog) -> None:
    f = tmp_path / "registry.yaml"
    good, bad = "backends:\n  math: {address: 'a:1'}\n", "backends:\n  math: {address: 'a:1', timeout_seconds: 0}\n"
    write(f, good)
    reg = RewardRegistry(registry_file=f)
    for _ in range(2):  # bad, back to good, the same bad again: each bad edit is an error in the log
        write(f, bad)
        with caplog.at_level(logging.ERROR):
            caplog.clear()
            assert reg.reload_if_changed() is False
            assert reg.reload_if_changed() is False  # checked again unchanged: not logged twice
        assert caplog.text.count("backends.math.timeout_seconds") == 1, caplog.text
        write(f, good)
        assert reg.reload_if_changed() is False
    for _ in range(2):  # likewise a file removed, restored, removed again
        f.unlink()
        with caplog.at_level(logging.ERROR):
            caplog.clear()
            assert reg.reload_if_changed() is False
        assert caplog.text.count("unreadable") == 1, caplog.text
        write(f, good)
        assert reg.reload_if_changed() is False
