"""Recurrent highway network LMs: the cell against a hand computation, learning, deep gradients, size, the families."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import pytest
import torch

from domains.base import TrialSetup
from domains.lm import LMDomain
from domains.lm.data import LMData
from domains.lm.rhn import RecurrentHighwayLM, RHNCell, rhn_parameter_count
from domains.lm.task import LMTask
from domains.training import count_parameters


def test_one_step_matches_a_hand_computation() -> None:
    """Two micro-layers, input 2, width 3: the equations of Zilly et al. written out with explicit ops."""
    cell = RHNCell(input_size=2, width=3, depth=2)
    g = torch.Generator().manual_seed(0)
    w_h, w_t = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)  # (out, in), as in the paper
    r_h = [torch.randn(3, 3, generator=g) for _ in range(2)]
    r_t = [torch.randn(3, 3, generator=g) for _ in range(2)]
    b_h = [torch.randn(3, generator=g) for _ in range(2)]
    b_t = [torch.randn(3, generator=g) - 2.0 for _ in range(2)]
    with torch.no_grad():
        cell.input_weight.copy_(torch.cat([w_h, w_t]).T)
        for layer in range(2):
            cell.recurrent_weight[layer].copy_(torch.cat([r_h[layer], r_t[layer]]).T)
            cell.bias[layer].copy_(torch.cat([b_h[layer], b_t[layer]]))
    x = torch.tensor([[0.5, -1.0], [2.0, 0.25]])  # batch of 2
    s0 = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.4, -0.5]])

    expected = []
    for xb, s in zip(x, s0, strict=True):
        for layer in range(2):
            h_in = r_h[layer] @ s + b_h[layer] + (w_h @ xb if layer == 0 else 0.0)
            t_in = r_t[layer] @ s + b_t[layer] + (w_t @ xb if layer == 0 else 0.0)
            h, t = torch.tanh(h_in), torch.sigmoid(t_in)
            s = h * t + s * (1.0 - t)  # coupled carry gate c = 1 - t
        expected.append(s)

    out, last = cell(x[:, None, :], s0)
    assert out.shape == (2, 1, 3)
    torch.testing.assert_close(last, torch.stack(expected), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[:, 0], last)


def test_transform_gate_starts_mostly_closed() -> None:
    cell = RHNCell(4, 8, depth=3, gate_bias=-3.0)
    assert torch.all(cell.bias[:, 8:] == -3.0) and torch.all(cell.bias[:, :8] == 0.0)


@pytest.mark.parametrize("tie_weights", [False, True])
def test_parameter_count_matches_the_formula(tie_weights: bool) -> None:
    vocab, width, depth = 50, 12, 4
    model = RecurrentHighwayLM(vocab, width, depth, tie_weights=tie_weights)
    by_hand = vocab * width + 2 * width * width + depth * (2 * width * width + 2 * width) + vocab
    by_hand += 0 if tie_weights else width * vocab
    assert count_parameters(model) == rhn_parameter_count(vocab, width, depth, tie_weights) == by_hand


def test_gradients_reach_the_first_micro_layer_at_depth_10() -> None:
    """A loss on the last step only: its gradient crosses 10 micro-layers per step back to the first step."""
    torch.manual_seed(0)
    model = RecurrentHighwayLM(vocab=30, width=16, depth=10)
    tokens = torch.randint(0, 30, (4, 20))
    logits, _ = model(tokens, model.init_hidden(4))
    torch.nn.functional.cross_entropy(logits[:, -1], tokens[:, 0]).backward()
    first = model.cell.recurrent_weight.grad[0]
    assert first.abs().sum() > 0 and math.isfinite(first.norm().item())
    assert model.cell.input_weight.grad.norm() > 0  # the input enters only the first micro-layer
    first_token = model.embed.weight.grad[tokens[:, 0]]  # the first token's embedding, 19 steps back
    assert first_token.norm() > 1e-8 and math.isfinite(first_token.norm().item())


def rhn_task(data: LMData, family: str, width: int = 32, **hparams: object) -> LMTask:
    setup = TrialSetup(family=family, fraction=1.0, width=width, seed=0,
                       hparams={"batch_size": 8, "bptt": 16, **hparams})
    return LMDomain().build_task(data, setup)


def test_small_rhn_overfits_a_tiny_corpus(data: LMData) -> None:
    t = rhn_task(data, "word_rhn", depth=3, dropout=0.0, lr=0.01)
    first = t.train(10)
    t.train(140)
    last = t.train(10)
    assert last.loss < 0.5 * first.loss, (first.loss, last.loss)
    assert count_parameters(t.model) == rhn_parameter_count(data.vocab_size("word"), 32, 3)


def test_char_rhn_family_reads_characters_and_resumes(data: LMData) -> None:
    domain = LMDomain()
    assert domain.hparam_defaults("char_rhn")["depth"] == 10
    t = rhn_task(data, "char_rhn", width=16, depth=2, bptt=8, state_dropout=0.2, dropout=0.2)
    assert t.model.vocab == data.vocab_size("char")
    t.train(3)
    state = t.state_dict()
    expected = [t.train(2).loss, t.evaluate()]
    again = rhn_task(data, "char_rhn", width=16, depth=2, bptt=8, state_dropout=0.2, dropout=0.2)
    again.load_state_dict(state)
    assert [again.train(2).loss, again.evaluate()] == expected  # dropout masks come from the saved RNG
    assert set(expected[1]) == set(domain.family("char_rhn").metrics)


def test_rhn_hyperparameters_are_checked(data: LMData) -> None:
    with pytest.raises(ValueError, match="gate_bias"):
        rhn_task(data, "word_rhn", gate_bias=1.0)
    with pytest.raises(ValueError, match="depth"):
        rhn_task(data, "word_rhn", depth=0)
    with pytest.raises(ValueError, match="unknown LM word RHN hyperparameters"):
        rhn_task(data, "word_rhn", layers=2)


@pytest.mark.parametrize(("family", "hp"), [("word_rhn", {"depth": 3}),
                                            ("word", {"layers": 2, "softmax_cutoffs": "20,60"})],
                         ids=["rhn", "lstm-adaptive-softmax"])
def test_two_replicas_train_as_one_process_on_the_whole_batch(data: LMData, family: str,
                                                              hp: dict[str, object]) -> None:
    """Data-parallel RHN, and a 2-layer LSTM with an adaptive softmax: two replicas (threads whose ``sync``
    averages gradients, as an all-reduce does), each on half the readers and carrying its own state, end where
    one process on the whole batch ends."""
    hp = {**hp, "dropout": 0.0, "lr": 0.01}
    whole = rhn_task(data, family, width=16, **hp)
    replicas = [rhn_task(data, family, width=16, **hp) for _ in range(2)]
    barrier, sent = threading.Barrier(2), {}

    def sync_for(rank: int) -> Callable[[torch.Tensor], torch.Tensor]:
        params = list(replicas[rank].model.parameters())

        def sync(loss: torch.Tensor) -> torch.Tensor:
            sent[rank] = ([p.grad.clone() for p in params], loss.detach())
            barrier.wait()
            for p, a, b in zip(params, sent[0][0], sent[1][0], strict=True):
                p.grad.copy_((a + b) / 2)
            mean = (sent[0][1] + sent[1][1]) / 2
            barrier.wait()  # neither replica sends the next step's gradients before both have read these
            return mean

        return sync

    for rank, replica in enumerate(replicas):
        replica.join_replicas(rank, 2, sync_for(rank))
    losses: dict[int, float] = {}
    threads = [threading.Thread(target=lambda r=r: losses.__setitem__(r, replicas[r].train(4).loss))
               for r in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    expected = whole.train(4).loss
    assert losses[0] == pytest.approx(expected, rel=1e-5) and losses[1] == pytest.approx(expected, rel=1e-5)
    for replica in replicas:
        for mine, theirs in zip(replica.model.parameters(), whole.model.parameters(), strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5)
