"""SDPO distillation losses against hand-computed examples; the EMA teacher."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_server.algorithm import (
    ema_update,
    generalized_jsd,
    sdpo_is_weights,
    sdpo_logit_kl,
    sdpo_sampled_reverse_kl,
)

# Student uniform over 2 tokens, teacher (0.75, 0.25).
FORWARD = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL(t || s) = 0.130812
REVERSE = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2.0)  # KL(s || t) = 0.143841
JSD_HALF = 0.5 * (0.75 * math.log(0.75 / 0.625) + 0.25 * math.log(0.25 / 0.375)) + 0.5 * (
    0.5 * math.log(0.5 / 0.625) + 0.5 * math.log(0.5 / 0.375)
)  # M = (0.625, 0.375): 0.033822


def _two_token_logits() -> tuple[torch.Tensor, torch.Tensor]:
    student = torch.zeros(1, 1, 2, requires_grad=True)
    teacher = torch.tensor([[[math.log(3.0), 0.0]]])
    return student, teacher


def test_hand_values_of_the_constants() -> None:
    assert pytest.approx(0.130812, abs=1e-6) == FORWARD
    assert pytest.approx(0.143841, abs=1e-6) == REVERSE
    assert pytest.approx(0.033822, abs=1e-6) == JSD_HALF


def test_sampled_reverse_kl_reports_the_estimate_and_has_the_reinforce_gradient() -> None:
    student = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    teacher = torch.tensor([[-1.5, -1.0]], requires_grad=True)
    loss = sdpo_sampled_reverse_kl(student, teacher, torch.ones(1, 2))
    loss.backward()
    # value: mean(log s - log t) = mean(0.5, -1) = -0.25; gradient: (log s - log t) / 2 per token
    assert loss.item() == pytest.approx(-0.25)
    assert student.grad is not None and student.grad[0].tolist() == pytest.approx([0.25, -0.5])
    assert teacher.grad is None or bool((teacher.grad == 0).all())


def test_sampled_reverse_kl_gradient_is_unbiased_for_the_exact_kl_gradient() -> None:
    theta = torch.tensor([0.5, -0.2, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    teacher = torch.log_softmax(torch.tensor([0.0, 1.0, -0.5, 0.3], dtype=torch.float64), -1)
    g = torch.Generator().manual_seed(7)
    samples = torch.multinomial(torch.softmax(theta.detach(), -1), 200_000, replacement=True, generator=g)
    student = torch.log_softmax(theta, -1)
    loss = sdpo_sampled_reverse_kl(
        student[samples].unsqueeze(0), teacher[samples].unsqueeze(0), torch.ones(1, 200_000)
    )
    (grad_estimate,) = torch.autograd.grad(loss, theta)
    p = torch.softmax(theta, -1)
    exact = (p * (torch.log_softmax(theta, -1) - teacher)).sum()
    (grad_exact,) = torch.autograd.grad(exact, theta)
    torch.testing.assert_close(grad_estimate, grad_exact, atol=1e-2, rtol=0)
    assert loss.item() == pytest.approx(exact.item(), abs=1e-2)


def test_is_clip_weights_the_sampled_estimator_per_token() -> None:
    student = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    sampling = torch.tensor([[-1.0 - math.log(3.0), -2.0]])  # ratios 3 and 1 -> weights 2 (clipped), 1
    assert sdpo_is_weights(student, sampling, clip=2.0).tolist() == [[pytest.approx(2.0), 1.0]]
    loss = sdpo_sampled_reverse_kl(
        student, torch.tensor([[-1.5, -1.0]]), torch.ones(1, 2), sampling_logp=sampling, is_clip=2.0
    )
    loss.backward()
    assert loss.item() == pytest.approx((0.5 * 2 - 1.0) / 2)
    assert student.grad is not None and student.grad[0].tolist() == pytest.approx([0.5, -0.5])
    with pytest.raises(ValueError, match="sampling_logp"):
        sdpo_sampled_reverse_kl(student, student.detach(), torch.ones(1, 2), is_clip=2.0)


@pytest.mark.parametrize(("kind", "expected"), [("forward", FORWARD), ("reverse", REVERSE)])
def test_full_logit_kl_by_hand(kind: str, expected: float) -> None:
    student, teacher = _two_token_logits()
    assert sdpo_logit_kl(student, teacher, torch.ones(1, 1), kind=kind).item() == pytest.approx(expected)


def test_logit_kl_divides_by_the_temperature() -> None:
    student, teacher = _two_token_logits()
    loss = sdpo_logit_kl(student, teacher * 2, torch.ones(1, 1), temperature=2.0)
    assert loss.item() == pytest.approx(FORWARD)


def test_top_k_keeps_the_teachers_k_tokens_and_renormalises_both() -> None:
    # The student puts most mass on token 2, which the teacher's top-2 leaves out: over tokens {0, 1}
    # both renormalise to the two-token example.
    student = torch.tensor([[[0.0, 0.0, 5.0]]], requires_grad=True)
    teacher = torch.tensor([[[math.log(3.0), 0.0, -4.0]]])
    assert sdpo_logit_kl(student, teacher, torch.ones(1, 1), top_k=2).item() == pytest.approx(FORWARD)
    assert sdpo_logit_kl(student, teacher, torch.ones(1, 1), kind="reverse", top_k=2).item() == pytest.approx(
        REVERSE
    )
    full = sdpo_logit_kl(student, teacher, torch.ones(1, 1)).item()
    assert full > 1.0  # the full KL sees the misplaced mass
    with pytest.raises(ValueError, match="top_k"):
        sdpo_logit_kl(student, teacher, torch.ones(1, 1), top_k=4)


def test_masked_positions_do_not_count() -> None:
    student = torch.zeros(1, 2, 2, requires_grad=True)
    teacher = torch.tensor([[[math.log(3.0), 0.0], [50.0, -50.0]]])
    loss = sdpo_logit_kl(student, teacher, torch.tensor([[1.0, 0.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(FORWARD)
    assert student.grad is not None and student.grad[0, 1].abs().sum().item() == 0.0


def test_logit_kl_gradient_matches_autograd_of_the_formula_and_skips_the_teacher() -> None:
    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, 7, generator=g, requires_grad=True)
    teacher = torch.randn(2, 3, 7, generator=g, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss = sdpo_logit_kl(student, teacher, mask, kind="reverse", chunk_size=2)
    loss.backward()
    assert teacher.grad is None
    got = student.grad.clone()  # type: ignore[union-attr]
    student.grad = None
    ls, lt = torch.log_softmax(student, -1), torch.log_softmax(teacher.detach(), -1)
    want = ((ls.exp() * (ls - lt)).sum(-1) * mask).sum() / mask.sum()
    want.backward()
    torch.testing.assert_close(loss, want.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(got, student.grad, atol=1e-6, rtol=0)


def test_generalized_jsd_by_hand_and_its_limits() -> None:
    student, teacher = _two_token_logits()
    mask = torch.ones(1, 1)
    assert generalized_jsd(student, teacher, mask, alpha=0.5).item() == pytest.approx(JSD_HALF, abs=1e-6)
    assert generalized_jsd(student, teacher, mask, alpha=0.0).item() == pytest.approx(FORWARD)
    assert generalized_jsd(student, teacher, mask, alpha=1.0).item() == pytest.approx(REVERSE)
    # The limits in float64: in fp32 the JSD at alpha = 1e-4 (about 1e-5 nats) has no digits to spare.
    student, teacher = student.detach().double(), teacher.double()
    a = 1e-4
    assert generalized_jsd(student, teacher, mask, alpha=a).item() / a == pytest.approx(FORWARD, rel=1e-3)
    assert generalized_jsd(student, teacher, mask, alpha=1 - a).item() / a == pytest.approx(REVERSE, rel=1e-3)
    assert generalized_jsd(student, teacher, mask, alpha=0.5).item() <= math.log(2)
    with pytest.raises(ValueError, match="alpha"):
        generalized_jsd(student, teacher, mask, alpha=1.5)


def test_every_divergence_is_zero_when_student_and_teacher_agree() -> None:
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 3)
    for loss in (
        sdpo_logit_kl(logits, logits, mask),
        sdpo_logit_kl(logits, logits, mask, kind="reverse", top_k=3),
        generalized_jsd(logits, logits, mask, alpha=0.3),
    ):
        assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_normalizer_lets_micro_batches_sum_to_the_full_loss() -> None:
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    full = sdpo_logit_kl(s, t, mask).item()
    parts = sum(
        sdpo_logit_kl(s[i : i + 1], t[i : i + 1], mask[i : i + 1], normalizer=5.0).item() for i in range(2)
    )
    assert parts == pytest.approx(full)


@pytest.mark.parametrize("loss", [
    lambda s, t: sdpo_logit_kl(s, t, torch.ones(1, 1), "reverse"),
    lambda s, t: sdpo_logit_kl(s, t, torch.ones(1, 1), "forward"),
    lambda s, t: generalized_jsd(s, t, torch.ones(1, 1), 0.5),
], ids=["reverse", "forward", "jsd"])
def test_a_token_of_probability_zero_adds_nothing_to_value_or_gradient(loss) -> None:  # type: ignore[no-untyped-def]
    """0 * log 0 counted as 0 in the value only: the reverse KL's and the JSD's gradients were all NaN
    once the student gave a token probability 0 (a -inf logit)."""
    student = torch.tensor([[[0.0, 0.0, float("-inf")]]], requires_grad=True)
    teacher = torch.tensor([[[math.log(3.0), 0.0, float("-inf")]]])
    without = student.detach()[..., :2].clone().requires_grad_()  # the same distributions without that token
    value, reference = loss(student, teacher), loss(without, teacher[..., :2])
    value.backward()
    reference.backward()
    assert value.item() == pytest.approx(reference.item())
    assert student.grad is not None and without.grad is not None
    assert student.grad[0, 0].tolist() == pytest.approx(without.grad[0, 0].tolist() + [0.0])


def test_sampled_reverse_kl_ignores_a_masked_minus_infinity_in_value_and_gradient() -> None:
    """A masked position's -inf teacher log-prob (padding) made its gradient NaN though its value was masked."""
    student = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    value = sdpo_sampled_reverse_kl(student, torch.tensor([[-1.5, float("-inf")]]), torch.tensor([[1.0, 0.0]]),
                                    sampling_logp=torch.tensor([[-1.0, float("-inf")]]), is_clip=2.0)
    value.backward()
    assert value.item() == pytest.approx(0.5)
    assert student.grad is not None and student.grad[0].tolist() == pytest.approx([0.5, 0.0])


@pytest.mark.parametrize("loss", ["logit_kl", "jsd"])
def test_is_weights_from_padding_log_probs_leave_the_logit_gradients_finite(loss: str) -> None:
    """With is_clip, the weights come from the sampled log-probs; at padding those are -inf (exp(-inf -
    -inf): NaN), and 0 * NaN made the masked position's logit gradient NaN though the value left it out."""
    mask = torch.tensor([[1.0, 0.0]])
    student_logp, sampling_logp = torch.tensor([[-1.0, float("-inf")]]), torch.tensor([[-1.0, float("-inf")]])
    teacher = torch.tensor([[[math.log(3.0), 0.0], [0.0, 0.0]]])
    grads = []
    for weights in ({"student_logp": student_logp, "sampling_logp": sampling_logp, "is_clip": 2.0}, {}):
        student = torch.zeros(1, 2, 2, requires_grad=True)
        value = (sdpo_logit_kl(student, teacher, mask, "forward", **weights) if loss == "logit_kl"
                 else generalized_jsd(student, teacher, mask, 0.5, **weights))
        value.backward()
        assert student.grad is not None
        grads.append(student.grad)
    assert torch.isfinite(grads[0]).all(), grads[0]
    torch.testing.assert_close(grads[0], grads[1])  # weight 1 on the one real token: the same
    assert grads[0][0, 1].tolist() == [0.0, 0.0]


def test_ema_moves_the_teacher_five_percent_towards_the_student_in_place() -> None:
    teacher = [torch.nn.Parameter(torch.tensor([1.0, 2.0])), torch.nn.Parameter(torch.tensor([0.0]))]
    student = [torch.tensor([3.0, 0.0]), torch.tensor([10.0])]
    before = teacher[0].data_ptr()
    ema_update(teacher, student)
    assert teacher[0].tolist() == pytest.approx([1.1, 1.9])
    assert teacher[1].tolist() == pytest.approx([0.5])
    assert teacher[0].data_ptr() == before and teacher[0].grad is None
    ema_update(teacher, student, rate=1.0)
    assert teacher[0].tolist() == pytest.approx([3.0, 0.0])
    with pytest.raises(ValueError):
        ema_update(teacher, student[:1])
