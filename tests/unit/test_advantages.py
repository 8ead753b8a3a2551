"""Group advantages: the hand-worked GRPO numbers, scales, masks, zero-variance groups."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grpo_server.algorithm import group_advantages, keep_groups, zero_variance_groups


def test_group_of_three_right_one_wrong_gets_plus_0_577_and_minus_1_732() -> None:
    adv = group_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0]), group_size=4)
    # mean 0.75, population std sqrt(0.1875) = 0.4330
    assert adv.tolist() == pytest.approx([0.5774, 0.5774, 0.5774, -1.7321], abs=1e-4)


def test_group_of_eight_gets_plus_0_775_and_minus_1_291() -> None:
    adv = group_advantages(torch.tensor([1.0, 0, 1, 0, 1, 1, 0, 1]), group_size=8)
    # mean 0.625, population std sqrt(0.234375) = 0.4841
    expected = [0.7746, -1.2910, 0.7746, -1.2910, 0.7746, 0.7746, -1.2910, 0.7746]
    assert adv.tolist() == pytest.approx(expected, abs=1e-4)


def test_flat_and_two_dimensional_inputs_give_the_same_advantages_in_their_own_shape() -> None:
    flat = torch.tensor([1.0, 1, 1, 0, 0.0, 0.5, 1.0, 0.5])
    a_flat = group_advantages(flat, 4)
    a_2d = group_advantages(flat.reshape(2, 4), 4)
    assert a_flat.shape == (8,) and a_2d.shape == (2, 4)
    torch.testing.assert_close(a_flat.reshape(2, 4), a_2d)
    # Groups are independent: the second group is normalised by its own statistics.
    assert a_flat[:4].tolist() == pytest.approx([0.5774, 0.5774, 0.5774, -1.7321], abs=1e-4)
    std2 = math.sqrt(0.125)
    assert a_flat[4:].tolist() == pytest.approx([-0.5 / std2, 0.0, 0.5 / std2, 0.0], abs=1e-4)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("eps", [1e-6, 0.0])
def test_all_equal_group_gets_exactly_zero_and_never_nan(scale: str, eps: float) -> None:
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.1, 1.0, 0.0, 1.0, 0.0])
    adv = group_advantages(rewards, 4, scale=scale, eps=eps)
    assert not torch.isnan(adv).any()
    assert adv[:4].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert (adv[4:] != 0).all()


def test_a_batch_of_only_equal_rewards_with_eps_zero_is_zero_not_nan() -> None:
    for scale in ("group", "batch", "none"):
        adv = group_advantages(torch.ones(6), 3, scale=scale, eps=0.0)
        assert adv.tolist() == [0.0] * 6


def test_batch_scale_centres_per_group_and_divides_by_the_batch_population_std() -> None:
    rewards = torch.tensor([1.0, 0.0, 3.0, 1.0])
    adv = group_advantages(rewards, 2, scale="batch", eps=0.0)
    batch_std = torch.tensor([1.0, 0.0, 3.0, 1.0]).std(unbiased=False).item()  # mean 1.25, std 1.0897
    assert batch_std == pytest.approx(1.08972, abs=1e-5)
    assert adv.tolist() == pytest.approx(
        [0.5 / batch_std, -0.5 / batch_std, 1.0 / batch_std, -1.0 / batch_std]
    )


def test_none_scale_only_centres() -> None:
    adv = group_advantages(torch.tensor([1.0, 1.0, 1.0, 0.0]), 4, scale="none")
    assert adv.tolist() == pytest.approx([0.25, 0.25, 0.25, -0.75])


def test_eps_is_added_to_the_std() -> None:
    adv = group_advantages(torch.tensor([1.0, 0.0]), 2, eps=0.5)  # std 0.5 -> denominator 1.0
    assert adv.tolist() == pytest.approx([0.5, -0.5])


def test_masked_items_are_left_out_of_the_statistics_and_get_zero() -> None:
    # Item 2 has no reward (NaN stands in); the rest of the group is (1, 1, 0) -> mean 2/3, std 0.4714.
    rewards = torch.tensor([1.0, 1.0, float("nan"), 0.0])
    valid = torch.tensor([True, True, False, True])
    adv = group_advantages(rewards, 4, valid=valid)
    assert adv.tolist() == pytest.approx([0.7071, 0.7071, 0.0, -1.4142], abs=1e-4)


def test_a_group_left_with_one_valid_item_has_no_signal() -> None:
    valid = torch.tensor([True, False, False, False, True, True, True, True])
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    adv = group_advantages(rewards, 4, valid=valid)
    assert adv[:4].tolist() == [0.0] * 4
    assert zero_variance_groups(rewards, 4, valid=valid).tolist() == [True, False]


def test_zero_variance_groups_flags_groups_whose_valid_rewards_are_all_equal() -> None:
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.3, 0.3, 5.0, 0.3])
    valid = torch.tensor([True, True, True, True, True, True, False, True])
    assert zero_variance_groups(rewards, 2).tolist() == [True, True, True, False]
    assert zero_variance_groups(rewards, 2, valid=valid).tolist() == [True, True, True, True]
    assert zero_variance_groups(rewards.reshape(2, 4), 4).tolist() == [False, False]


def test_keep_groups_is_the_dapo_filter() -> None:
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    assert keep_groups(rewards, 3).tolist() == [False, True, False]


def test_bad_shapes_and_scales_are_rejected() -> None:
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.ones(5), 2)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(torch.ones(4), 2, scale="rank")
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.ones(2, 3), 2)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]), min_size=2, max_size=8),
    st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_masked_group_equals_the_group_of_its_valid_items(values: list[float], keep: list[bool]) -> None:
    rewards = torch.tensor(values, dtype=torch.float64)
    valid = torch.tensor(keep[: len(values)])
    adv = group_advantages(rewards, len(values), eps=0.0, valid=valid)
    assert (adv[~valid] == 0).all()
    kept = rewards[valid]
    if kept.numel() >= 1:
        alone = group_advantages(kept, kept.numel(), eps=0.0)
        torch.testing.assert_close(adv[valid], alone)
    if kept.numel() >= 2 and bool((kept != kept[0]).any()):
        # Standardised: mean 0, population std 1 over the valid items.
        assert adv[valid].mean().item() == pytest.approx(0.0, abs=1e-9)
        assert adv[valid].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-9)
