"""What the reward router does with answers a backend should not send but may (another team's service, a
bug): feedback of megabytes, scores beyond what the trainer's arithmetic holds, a prompt weight that
overflows, status messages of megabytes, the same id twice. Each is masked and counted (or, for feedback,
cut to the proto's limit) so that the step goes on; none may raise. Real RewardService servers on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "rewards"))

from scripted_backends import RecordingObserver, ScriptedBackend, Servers, group, ok  # noqa: E402

from grpo.reward.v1 import reward_pb2  # noqa: E402
from grpo_server.rewards.registry import BackendEntry, RewardRegistry  # noqa: E402
from grpo_server.rewards.router import MAX_ABS_SCORE, MAX_FEEDBACK_BYTES, RewardRouter  # noqa: E402
from grpo_server.types import RewardStatus  # noqa: E402


@pytest.fixture
def route() -> Iterator:
    """route(backend, groups) -> (scored groups, observer): one router on one scripted server "a"."""
    servers = Servers()
    made: list[RewardRouter] = []

    def run(backend: ScriptedBackend, groups: list) -> tuple[list, RecordingObserver]:
        registry = RewardRegistry([BackendEntry("a", servers.start(backend))])
        observer = RecordingObserver()
        router = RewardRouter(registry, observer=observer, backoff_base_s=0.01, backoff_max_s=0.05)
        made.append(router)
        registry_snapshot = registry.snapshot()
        return router.score(groups, registry_snapshot), observer

    yield run
    for r in made:
        r.close()
        r.registry.stop()
    servers.stop_all()


def test_feedback_over_the_protos_limit_is_cut_to_it_and_the_score_kept(route) -> None:
    """The proto allows 4 KiB of feedback; megabytes of it went whole into SDPO's re-prompts (a teacher
    sequence of a million tokens). Cut at a character boundary, with a note; the score stands."""
    long = "é" * (1 << 20)  # 2 MiB of UTF-8; a cut at an odd byte would split a character
    [scored], observer = route(ScriptedBackend(ok(0.5, feedback=long)), [group("p", ["a", "b"])])
    for c in scored.completions:
        assert c.reward == 0.5
        kept, note = c.feedback.split("\n[")
        assert kept == "é" * (MAX_FEEDBACK_BYTES // 2)
        assert note == (f"feedback cut by the trainer: the backend sent {len(long.encode())} bytes, "
                        f"at most {MAX_FEEDBACK_BYTES} are kept]")
    assert observer.item_failures == []


def test_feedback_within_the_limit_and_nul_bytes_pass_unchanged(route) -> None:
    text = "a\x00b" + "x" * (MAX_FEEDBACK_BYTES - 3)
    [scored], _ = route(ScriptedBackend(ok(1.0, feedback=text)), [group("p", ["a"])])
    assert scored.completions[0].feedback == text


@pytest.mark.parametrize("score, steps", [(MAX_ABS_SCORE * 10, ()), (-1e300, ()), (1.0, (1.0, 1e300))])
def test_a_score_beyond_the_trainers_range_is_masked_as_internal(route, score, steps) -> None:
    """Finite doubles such as 1e300 overflow the trainer's float32 rewards and its group statistics (inf,
    then NaN advantages and a loss that ends the run): masked and counted like a NaN."""
    def scorer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        ends = [0, len(item.completion)][: len(steps)]
        return reward_pb2.ScoreResult(id=item.id, score=score, status=reward_pb2.SCORE_STATUS_OK,
                                      step_scores=steps, step_end_offsets=ends)

    [scored], observer = route(ScriptedBackend(scorer), [group("p", ["ab", "c"])])
    for c in scored.completions:
        s = c.scores[0]
        assert c.reward is None and s.status is RewardStatus.INTERNAL and s.item_failure
        assert f"is outside -{MAX_ABS_SCORE:g}..{MAX_ABS_SCORE:g}" in s.message, s.message
    assert observer.item_failures == [("a", "internal")] * 2


def test_a_score_at_the_bound_is_kept(route) -> None:
    [scored], _ = route(ScriptedBackend(ok(-MAX_ABS_SCORE)), [group("p", ["a"])])
    assert scored.completions[0].reward == -MAX_ABS_SCORE


def test_a_prompt_weight_that_overflows_the_reward_is_masked_as_the_prompts_invalid_input(route) -> None:
    """The API takes any finite weight; 1e308 x 2 is inf. The item is the prompt's fault: INVALID_INPUT,
    counted as an item failure (an attempt of the prompt), with the weight named."""
    [big, fine], observer = route(ScriptedBackend(ok(2.0)),
                                  [group("big", ["a"], (("a", 1e308),)), group("fine", ["a"], (("a", 3.0),))])
    s = big.completions[0].scores[0]
    assert big.completions[0].reward is None and s.status is RewardStatus.INVALID_INPUT and s.item_failure
    assert s.weight == 1e308
    assert s.message == f"the prompt's weight 1e+308 x score 2 is outside -{MAX_ABS_SCORE:g}..{MAX_ABS_SCORE:g}"
    assert fine.completions[0].reward == 6.0
    assert observer.item_failures == [("a", "invalid_input")]


def test_a_status_message_of_megabytes_is_cut(route) -> None:
    def scorer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, status=reward_pb2.SCORE_STATUS_INVALID_INPUT,
                                      status_message="bad " * 500_000)

    [scored], _ = route(ScriptedBackend(scorer), [group("p", ["a"])])
    s = scored.completions[0].scores[0]
    assert s.status is RewardStatus.INVALID_INPUT and len(s.message) == 1000 and s.message.endswith("...")


def test_step_lists_of_a_million_entries_are_masked_with_a_short_message(route) -> None:
    def scorer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
        return reward_pb2.ScoreResult(id=item.id, score=1.0, status=reward_pb2.SCORE_STATUS_OK,
                                      step_scores=[1.0] * 1_000_000, step_end_offsets=[5] * 1_000_000)

    [scored], _ = route(ScriptedBackend(scorer), [group("p", ["ab"])])
    s = scored.completions[0].scores[0]
    assert s.status is RewardStatus.INTERNAL and len(s.message) <= 1000, len(s.message)


def test_more_steps_than_characters_are_masked(route) -> None:
    """Offsets the proto allows (non-decreasing, within the completion) but a thousand steps in six
    characters: placing them cost the trainer about 1 s per 100k steps per completion pair. Masked; as
    many steps as characters (plus an empty first one) are placed."""
    def steps(n: int):
        def scorer(item: reward_pb2.ScoreItem) -> reward_pb2.ScoreResult:
            return reward_pb2.ScoreResult(id=item.id, score=1.0, status=reward_pb2.SCORE_STATUS_OK,
                                          step_scores=[1.0] * n, step_end_offsets=[len(item.completion)] * n)
        return scorer

    [scored], _ = route(ScriptedBackend(steps(1000)), [group("p", ["abcdef"])])
    s = scored.completions[0].scores[0]
    assert s.status is RewardStatus.INTERNAL
    assert s.message == "1000 step scores for a completion of 6 code points: more steps than it has characters"
    [scored], _ = route(ScriptedBackend(steps(7)), [group("p", ["abcdef"])])
    assert scored.completions[0].scores[0].status is RewardStatus.OK


def test_one_id_answered_twice_masks_the_item_left_without_an_answer(route) -> None:
    """Two results for the first item and none for the second (the count matches): the first is scored,
    the second masked as having no result, nothing raises."""
    def twice_first(response: reward_pb2.ScoreResponse) -> reward_pb2.ScoreResponse:
        first = response.results[0]
        return reward_pb2.ScoreResponse(results=[first, first])

    [scored], observer = route(ScriptedBackend(ok(1.0), mangle=twice_first), [group("p", ["a", "b"])])
    assert [c.reward for c in scored.completions] == [1.0, None]
    assert scored.completions[1].scores[0].message == "no result for item id 'p/1'"
    assert observer.item_failures == [("a", "internal")]
