"""NMT training with real torch on real parallel text: memorizing 64 pairs, padding invariance, BLEU, metrics,
exact resume, divergence, incremental decoding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch

from domains.base import TrialSetup
from domains.layers import reverse_within
from domains.nmt import NMTDomain
from domains.nmt.data import NMTData
from domains.nmt.models import TransformerSeq2Seq, build_model, sinusoids, token_loss
from domains.nmt.task import IGNORE, POOL, NMTTask, ShardBatches, make_batch

FAMILIES = ("lstm", "transformer")
FAST = {"layers": 1, "batch_size": 16, "lr": 0.01, "dropout": 0.0}


@pytest.fixture(scope="module")
def data64(offline_de_en: Path, tmp_path_factory: pytest.TempPathFactory) -> NMTData:
    """64 real gettext pairs (English side of at most 10 words) for training, the corpus's validation pairs."""
    root = tmp_path_factory.mktemp("nmt64")
    de = (offline_de_en / "train.de").read_text(encoding="utf-8").splitlines()
    en = (offline_de_en / "train.en").read_text(encoding="utf-8").splitlines()
    rows = [f"{d}\t{e}" for d, e in zip(de, en, strict=True) if len(e.split()) <= 10][:64]
    (root / "train.tsv").write_text("".join(f"{r}\n" for r in rows), encoding="utf-8")
    domain = NMTDomain()
    source = domain.source_model(train=str(root / "train.tsv"), valid=str(offline_de_en / "valid"), vocab_size=300,
                                 max_valid_pairs=60, bleu_pairs=20)
    return domain.prepare(source, root / "cache")


def task(data: NMTData, family: str, width: int = 64, seed: int = 0, fraction: float = 1.0,
         **hparams: object) -> NMTTask:
    hp = {**FAST, **({"warmup_steps": 0, "head_dim": 32} if family == "transformer" else {}), **hparams}
    return NMTDomain().build_task(data, TrialSetup(family=family, fraction=fraction, width=width, hparams=hp,
                                                   seed=seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_small_model_drives_the_training_loss_of_64_pairs_down_by_90_percent(data64: NMTData,
                                                                               family: str) -> None:
    assert data64.num_pairs == 64
    t = task(data64, family, lr=0.03 if family == "lstm" else 0.01)
    first = t.train(4)
    last = first
    for _ in range(12):  # at most 4 + 12 * 25 steps; stops as soon as the goal is reached
        last = t.train(25)
        if last.loss < 0.1 * first.loss:
            break
    assert last.loss < 0.1 * first.loss, (first.loss, last.loss)
    assert first.samples == sum(t._batches.split.target_tokens(t._batches.batch(0, j)).sum() for j in range(4))
    assert first.extra["pairs"] == 4 * 16 and first.extra["shard_pairs"] == 64


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_positions_do_not_change_the_loss(data64: NMTData, family: str) -> None:
    torch.manual_seed(0)
    model = build_model(family, data64.vocab_size, 32, layers=2, dropout=0.0, tie_embeddings=family != "lstm",
                        head_dim=16)
    lengths = np.diff(data64.train.src_offsets)
    batch = make_batch(data64.train, np.argsort(lengths)[::7][:8])  # lengths differ: plenty of padding
    src_pad = torch.arange(batch.src.size(1))[None, :] >= batch.src_lengths[:, None]
    tgt_pad = batch.tgt_out == IGNORE
    assert src_pad.any() and tgt_pad.any()
    noisy_src = torch.where(src_pad, torch.randint_like(batch.src, 4, data64.vocab_size), batch.src)
    noisy_tgt = torch.where(tgt_pad, torch.randint_like(batch.tgt_in, 4, data64.vocab_size), batch.tgt_in)
    for mode in (model.train, model.eval):
        mode()
        clean = token_loss(model(batch.src, batch.src_lengths, batch.tgt_in), batch.tgt_out)
        noisy = token_loss(model(noisy_src, batch.src_lengths, noisy_tgt), batch.tgt_out)
        torch.testing.assert_close(noisy, clean, rtol=1e-5, atol=1e-6)
    # the lengths are what counts: one token fewer in a source does change its row's predictions
    shorter = batch.src_lengths.clone()
    shorter[-1] -= 1
    logits = model(batch.src, batch.src_lengths, batch.tgt_in)
    cut = model(batch.src, shorter, batch.tgt_in)
    assert torch.equal(cut[:-1], logits[:-1]) and not torch.equal(cut[-1], logits[-1])


def test_bleu_of_a_perfect_translation_is_100(data64: NMTData, offline_de_en: Path, tmp_path: Path) -> None:
    t = task(data64, "lstm")
    refs = list(data64.valid_refs)
    assert t.bleu(refs) == pytest.approx(100.0)
    assert sacrebleu.corpus_bleu(refs, [refs]).score == pytest.approx(100.0)
    assert t.bleu([""] * len(refs)) == 0.0
    # what a model can output is what the shared tokenizer decodes: with byte fallback every reference
    # survives it exactly, so a model emitting the reference pieces scores 100 (without, characters never
    # seen in training come back as " ⁇ ")
    domain = NMTDomain()
    exact = domain.prepare(domain.source_model(train=str(offline_de_en / "valid"), valid=str(offline_de_en / "valid"),
                                               vocab_size=400, max_pairs=64, bleu_pairs=100, byte_fallback=True),
                           tmp_path)
    sp = exact.processor()
    decoded = [sp.decode(sp.encode(r)) for r in exact.valid_refs]
    assert decoded == list(exact.valid_refs)
    assert sacrebleu.corpus_bleu(decoded, [list(exact.valid_refs)]).score == pytest.approx(100.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluate_reports_the_declared_metrics(data64: NMTData, family: str) -> None:
    domain = NMTDomain()
    t = task(data64, family)
    untrained = t.evaluate()
    assert set(untrained) == set(domain.family(family).metrics) and domain.family(family).metric == "val_xent"
    assert untrained["val_xent"] == pytest.approx(math.log(data64.vocab_size), abs=1.5)  # about a uniform guess
    assert untrained["val_bleu_loss"] == pytest.approx(100.0, abs=1.0)
    t.train(60)
    metrics = t.evaluate()
    assert metrics["val_xent"] < untrained["val_xent"] and 0 < metrics["val_token_error"] <= 1
    assert 0 <= metrics["val_bleu_loss"] <= 100
    assert len(t.translate_validation()) == len(data64.valid_refs)
    assert t.evaluate() == metrics  # evaluating disturbs nothing


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_resumes_the_same_run(data64: NMTData, family: str) -> None:
    a = task(data64, family, dropout=0.3, batch_size=8)  # dropout makes the RNG state matter
    a.train(POOL + 3)  # past the first length-sorted pool
    state = a.state_dict()
    expected = [a.train(3).loss for _ in range(2)]
    expected_eval = a.evaluate()
    b = task(data64, family, dropout=0.3, batch_size=8, seed=99)  # another init and data order, then restored
    with pytest.raises(ValueError, match="another shard or batch size"):
        task(data64, family, batch_size=4).load_state_dict(state)
    b.load_state_dict(state)
    assert [b.train(3).loss for _ in range(2)] == expected
    assert b.evaluate() == expected_eval


def test_same_seed_same_run_other_seed_other_run(data64: NMTData) -> None:
    runs = [task(data64, "lstm", seed=s).train(5).loss for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


def test_batches_cover_every_pair_each_epoch_and_tiny_shards_work(data64: NMTData) -> None:
    shard = data64.shard_pairs(1.0)
    batches = ShardBatches(data64.train, shard, batch_size=16, seed=0)
    first_epoch = np.concatenate([batches.batch(0, j) for j in range(POOL)])  # 8 epochs of 64 pairs
    assert sorted(np.bincount(first_epoch, minlength=64).tolist()) == [8] * 64
    assert all(len(set(batches.batch(0, j).tolist())) == 16 for j in range(POOL))  # no pair twice in a batch
    t = task(data64, "transformer", fraction=1 / 64, batch_size=32)  # one pair, batches of 32
    assert math.isfinite(t.train(3).loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_huge_learning_rate_gives_nonfinite_loss_not_an_exception(data64: NMTData, family: str) -> None:
    t = task(data64, family, optimizer="sgd", lr=1e9, clip=0.0)
    stats = t.train(20)
    assert not math.isfinite(stats.loss) and 1 <= stats.steps <= 20
    assert all(math.isnan(v) for v in t.evaluate().values())
    assert math.isnan(t.train(5).loss) and t.train(5).steps == 0


def test_incremental_transformer_decoding_matches_the_full_decoder() -> None:
    torch.manual_seed(0)
    model = TransformerSeq2Seq(60, 32, layers=2, dropout=0.1, head_dim=16).eval()
    src, lengths = torch.randint(4, 60, (3, 7)), torch.tensor([7, 4, 2])
    tgt = torch.randint(4, 60, (3, 6))
    memory, pad = model.encode(src, lengths)
    full = model.decode(tgt, memory, pad)
    cache: list[torch.Tensor | None] = [None, None]
    for t in range(tgt.size(1)):
        torch.testing.assert_close(model.step(tgt[:, t], t, memory, pad, cache), full[:, t], rtol=1e-4, atol=1e-5)
    model.train()
    assert len(model.greedy(src, lengths, 5)) == 3 and model.training  # greedy switches to eval and back
    long = model._positions(600)  # position encodings grow past their first 256 on demand
    torch.testing.assert_close(long, sinusoids(600, 32))


def test_reverse_within_keeps_padding_in_place() -> None:
    x = torch.arange(12.0).view(2, 6, 1)
    out = reverse_within(x, torch.tensor([4, 6]))[..., 0]
    assert out.tolist() == [[3, 2, 1, 0, 4, 5], [11, 10, 9, 8, 7, 6]]


def test_hyperparameters_are_checked() -> None:
    domain = NMTDomain()
    assert set(domain.hparam_defaults("transformer")) - set(domain.hparam_defaults("lstm")) == {"head_dim",
                                                                                                  "ffn_ratio"}
    with pytest.raises(ValueError, match="unknown NMT lstm hyperparameters"):
        domain.check_hparams("lstm", {"head_dim": 32})
    with pytest.raises(ValueError, match="must be an integer"):
        domain.check_hparams("lstm", {"layers": 1.5})
    with pytest.raises(ValueError, match="out of range"):
        domain.check_hparams("transformer", {"label_smoothing": 1.0})
    with pytest.raises(ValueError, match="must be even"):
        build_model("lstm", 100, 33, layers=1, dropout=0.0, tie_embeddings=False)
