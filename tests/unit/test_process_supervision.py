"""Process supervision: step rewards normalised over the group, token advantage = suffix sum of steps."""

from __future__ import annotations

import pytest
import torch

from grpo_server.algorithm import char_offsets_to_token_ends, process_advantages


def test_the_hand_worked_group_of_two_completions() -> None:
    # All step rewards of the group: (1, 1, 0, 0, 1): mean 0.6, population std sqrt(0.24) = 0.4899,
    # so a 1 normalises to +0.8165 and a 0 to -1.2247.
    hi, lo = 0.4 / 0.24**0.5, -0.6 / 0.24**0.5
    adv = process_advantages(
        step_rewards=[[1.0, 1.0], [0.0, 0.0, 1.0]],
        step_token_ends=[[2, 4], [1, 2, 4]],
        seq_len=5,
        group_size=2,
        eps=0.0,
    )
    assert adv.shape == (2, 5) and adv.dtype == torch.float32
    # completion 0: tokens 0-1 in step 0 (hi + hi), tokens 2-3 in step 1 (hi), token 4 after the last step
    assert adv[0].tolist() == pytest.approx([2 * hi, 2 * hi, hi, hi, 0.0], abs=1e-5)
    assert adv[0, 0].item() == pytest.approx(1.63299, abs=1e-4)
    # completion 1: token 0 = lo + lo + hi, token 1 = lo + hi, tokens 2-3 = hi
    assert adv[1].tolist() == pytest.approx([2 * lo + hi, lo + hi, hi, hi, 0.0], abs=1e-5)
    assert adv[1, :2].tolist() == pytest.approx([-1.63299, -0.40825], abs=1e-4)


def test_groups_are_normalised_separately_and_equal_groups_get_zero() -> None:
    adv = process_advantages(
        step_rewards=[[1.0], [0.0], [0.5, 0.5], [0.5]],
        step_token_ends=[[3], [2], [1, 3], [3]],
        seq_len=3,
        group_size=2,
    )
    assert adv[0].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert adv[1].tolist() == pytest.approx([-1.0, -1.0, 0.0], abs=1e-5)
    assert adv[2:].abs().sum().item() == 0.0


def test_completions_without_step_rewards_get_zero_and_are_left_out_of_the_statistics() -> None:
    adv = process_advantages([[1.0], [], [0.0]], [[2], [], [2]], seq_len=2, group_size=3, eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([[1.0, 1.0], [0.0, 0.0], [-1.0, -1.0]]))


def test_step_ends_beyond_the_sequence_are_cut() -> None:
    adv = process_advantages([[1.0], [0.0]], [[10], [1]], seq_len=2, group_size=2, eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([[1.0, 1.0], [-1.0, 0.0]]))


def test_inconsistent_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="step ends"):
        process_advantages([[1.0, 0.0]], [[2]], 3, 1)
    with pytest.raises(ValueError, match="non-decreasing"):
        process_advantages([[1.0, 0.0]], [[2, 1]], 3, 1)
    with pytest.raises(ValueError, match="groups"):
        process_advantages([[1.0]], [[1]], 3, 2)


def test_character_offsets_map_to_the_token_holding_each_steps_last_character() -> None:
    # "ab| cd| ef": tokens "ab", " cd", " ef" end at characters 2, 5, 8.
    token_char_ends = [2, 5, 8]
    assert char_offsets_to_token_ends([2, 5, 8], token_char_ends) == [1, 2, 3]
    assert char_offsets_to_token_ends([4, 8], token_char_ends) == [2, 3]  # a step ending inside " cd"
    assert char_offsets_to_token_ends([3], token_char_ends) == [2]  # " " alone still owns " cd"
    assert char_offsets_to_token_ends([0, 100], token_char_ends) == [0, 3]
