"""KL estimators against the exact KL; aggregation modes against plain loops and padding."""

import pytest
import torch

from rlvr.algorithms import AGGREGATIONS, aggregate, kl_penalty


def test_k3_is_nonnegative_and_zero_where_policies_agree():
    torch.manual_seed(0)
    logp = torch.randn(50, 7)
    ref = torch.randn(50, 7)
    assert (kl_penalty("k3", logp, ref) >= 0).all()
    assert torch.equal(kl_penalty("k3", logp, logp), torch.zeros(50, 7))
    assert (kl_penalty("k2", logp, ref) >= 0).all()


@pytest.mark.parametrize("name", ["k1", "k3"])
def test_unbiased_estimators_approach_the_exact_kl(name):
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.double)   # pi_theta (samples come from it)
    q = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.double)  # pi_ref
    exact = (p * (p / q).log()).sum()
    generator = torch.Generator().manual_seed(0)
    x = torch.multinomial(p, 200_000, replacement=True, generator=generator)
    estimate = kl_penalty(name, p.log()[x], q.log()[x]).mean()
    assert estimate == pytest.approx(exact.item(), rel=0.02)


def test_k2_is_biased_for_distant_policies():
    p = torch.tensor([0.9, 0.1], dtype=torch.double)
    q = torch.tensor([0.1, 0.9], dtype=torch.double)
    exact = (p * (p / q).log()).sum()
    k2_mean = (p * 0.5 * (q.log() - p.log()) ** 2).sum()  # its exact expectation
    assert abs(k2_mean - exact) > 0.1


def plain_aggregate(loss, lengths, mode, constant):
    seqs = [loss[i, :n].tolist() for i, n in enumerate(lengths)]
    if mode == "token-mean":
        return sum(map(sum, seqs)) / sum(lengths)
    if mode == "seq-mean-token-mean":
        return sum(sum(s) / len(s) for s in seqs) / len(seqs)
    if mode == "seq-mean-token-sum":
        return sum(sum(s) for s in seqs) / len(seqs)
    return sum(sum(s) for s in seqs) / len(seqs) / constant


@pytest.mark.parametrize("mode", AGGREGATIONS.names())
def test_every_mode_matches_a_plain_loop_on_ragged_lengths(mode):
    torch.manual_seed(1)
    lengths = [1, 4, 2, 6]
    loss = torch.randn(4, 6, dtype=torch.double)
    mask = (torch.arange(6)[None] < torch.tensor(lengths)[:, None]).double()
    value = aggregate(loss, mask, mode, constant=6.0)
    assert value.item() == pytest.approx(plain_aggregate(loss, lengths, mode, 6.0))


@pytest.mark.parametrize("mode", AGGREGATIONS.names())
def test_padding_beyond_the_mask_changes_neither_loss_nor_gradient(mode):
    torch.manual_seed(2)
    lengths = torch.tensor([2, 5, 3])
    mask = (torch.arange(5)[None] < lengths[:, None]).float()
    base = torch.randn(3, 5)
    garbage = torch.where(mask > 0, base, torch.randn(3, 5) * 1e3)
    results = []
    for values in (base, garbage):
        x = values.clone().requires_grad_()
        out = aggregate(x * 2.0, mask, mode, constant=5.0)
        (grad,) = torch.autograd.grad(out, x)
        results.append((out, grad))
    assert torch.allclose(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    assert torch.equal(results[0][1] * (1 - mask), torch.zeros(3, 5))
