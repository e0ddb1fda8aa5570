"""Learning-rate schedules: the values of ``HParams.lr_at``, torch's schedulers agreeing with them, a restored task
continuing its schedule, the budget reaching the schedule through the plan, and bad schedule fields refused."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from domains.base import TrialSetup
from domains.hparams import HParams
from orchestrator.plan import plan_trials, resolve_domains
from orchestrator.spec import SpecError, parse_spec
from tests.domains.digits_mlp import DigitsMLPDomain, MLPHParams


def schedule(kind: str, **extra: object) -> HParams:
    return HParams(lr=1.0, schedule=kind, warmup_steps=10, decay_steps=110, lr_floor=0.1, **extra)


def test_values_at_a_few_steps_match_a_hand_computation() -> None:
    cos45 = (1 + math.cos(math.pi / 4)) / 2  # a quarter of the way through the decay
    expected = {  # step: (cosine, linear, wsd, constant); wsd decays linearly over the last 20 of the 100 steps
        0: (0.1, 0.1, 0.1, 0.1),  # warm-up: (step + 1) / 10
        4: (0.5, 0.5, 0.5, 0.5),
        10: (1.0, 1.0, 1.0, 1.0),  # the peak, where the decay starts
        35: (0.1 + 0.9 * cos45, 0.1 + 0.9 * 0.75, 1.0, 1.0),
        60: (0.55, 0.55, 1.0, 1.0),  # half way: both decays at the middle of lr and floor
        90: (0.1 + 0.9 * (1 + math.cos(math.pi * 0.8)) / 2, 0.28, 1.0, 1.0),  # wsd's decay starts here
        100: (0.1 + 0.9 * (1 + math.cos(math.pi * 0.9)) / 2, 0.19, 0.55, 1.0),
        110: (0.1, 0.1, 0.1, 1.0),  # the floor at decay_steps
        500: (0.1, 0.1, 0.1, 1.0),  # held there after the budget
    }
    for step, values in expected.items():
        got = tuple(schedule(kind).lr_at(step) for kind in ("cosine", "linear", "wsd", "constant"))
        assert got == pytest.approx(values), f"step {step}"


def test_without_a_budget_the_rate_stays_at_its_peak_after_warm_up() -> None:
    hp = HParams(lr=0.5, warmup_steps=2)  # decay_steps 0: a task built outside a plan
    assert [hp.lr_at(s) for s in range(4)] == [0.25, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("kind", ["cosine", "linear", "wsd"])
def test_lr_at_is_torch_warm_up_then_decay(kind: str) -> None:
    """The closed form equals torch.optim.lr_scheduler's LinearLR warm-up followed by its decay (wsd: a ConstantLR
    stable phase, then a LinearLR decay), step by step."""
    hp = schedule(kind)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=hp.lr)
    sched = torch.optim.lr_scheduler
    warm = sched.LinearLR(opt, start_factor=1 / hp.warmup_steps, end_factor=1.0, total_iters=hp.warmup_steps - 1)
    span = hp.decay_steps - hp.warmup_steps
    if kind == "wsd":
        stable = round(span * (1 - hp.wsd_decay_fraction))
        phases = [warm, sched.ConstantLR(opt, factor=1.0, total_iters=0),
                  sched.LinearLR(opt, start_factor=1.0, end_factor=hp.lr_floor, total_iters=span - stable)]
        milestones = [hp.warmup_steps, hp.warmup_steps + stable]
    else:
        phases = [warm, sched.CosineAnnealingLR(opt, T_max=span, eta_min=hp.lr_floor * hp.lr) if kind == "cosine"
                  else sched.LinearLR(opt, start_factor=1.0, end_factor=hp.lr_floor, total_iters=span)]
        milestones = [hp.warmup_steps]
    torch_lr = sched.SequentialLR(opt, phases, milestones=milestones)
    for step in range(hp.decay_steps + 1):
        assert opt.param_groups[0]["lr"] == pytest.approx(hp.lr_at(step)), f"step {step}"
        opt.step()
        torch_lr.step()


def digits_task(tmp_path: Path, hp: dict) -> object:
    domain = DigitsMLPDomain()
    prepared = domain.prepare({}, tmp_path / "cache")
    return domain.build_task(prepared, TrialSetup(family="mlp", fraction=0.5, width=16, hparams=hp, seed=0))


def rates(task: object, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        task.train(1)
        out.append(task.optimizer.param_groups[0]["lr"])
    return out


def test_a_restored_task_continues_the_same_schedule(tmp_path: Path) -> None:
    hp = {"lr": 0.1, "warmup_steps": 3, "decay_steps": 20}
    whole = digits_task(tmp_path, hp)
    uninterrupted = rates(whole, 16)

    first = digits_task(tmp_path, hp)
    before = rates(first, 8)
    state = first.state_dict()
    resumed = digits_task(tmp_path, hp)  # a fresh process after a restore: step 0 until the state is loaded
    resumed.load_state_dict(state)
    after = rates(resumed, 8)

    assert before + after == pytest.approx(uninterrupted)
    assert uninterrupted == pytest.approx([MLPHParams(**hp).lr_at(s) for s in range(16)])
    assert uninterrupted[3] > uninterrupted[10] > uninterrupted[15] > 0.1 * 0.1  # decaying, not yet at the floor
    params = [p for p, q in zip(whole.model.parameters(), resumed.model.parameters(), strict=True)
              if not torch.equal(p, q)]
    assert not params  # and the same model: the schedule, the data and the optimizer all continued


BASE = {"name": "t", "storage": "/tmp/x", "domains": {"digits-mlp": {
    "data": {}, "families": ["mlp"], "shards": {"base": 2, "from": -1, "to": 0},
    "widths": [16], "early_stopping": {"max_steps": 300, "eval_every": 50, "grace_period": 50}}}}


def planned(hparams: dict) -> list:
    data = copy.deepcopy(BASE)
    data["domains"]["digits-mlp"]["hparams"] = hparams
    spec = parse_spec(data)
    return plan_trials(spec, resolve_domains(spec))


def test_the_plan_gives_the_schedule_the_trials_budget() -> None:
    trials = planned({})
    assert {(t.hparams["schedule"], t.hparams["decay_steps"], t.hparams["lr_floor"]) for t in trials} == {
        ("cosine", 300, 0.1)}  # default on: cosine to a tenth of the peak over max_steps
    assert {t.hparams["decay_steps"] for t in planned({"decay_steps": 120})} == {120}  # the spec's own wins
    constant = planned({"schedule": "constant"})
    assert {t.config_key for t in constant}.isdisjoint({t.config_key for t in trials})  # other trials


@pytest.mark.parametrize(("hparams", "message"), [
    ({"schedule": "cosin"}, "digits mlp hyperparameter schedule must be 'cosine', 'linear', 'wsd' or 'constant', "
                            "got 'cosin'"),
    ({"lr_floor": 1.5}, "digits mlp hyperparameter lr_floor must be a fraction of lr in [0, 1], got 1.5"),
    ({"warmup_steps": -1}, "digits mlp hyperparameters warmup_steps and decay_steps must be >= 0, got -1 and 300"),
])
def test_a_bad_schedule_is_refused_at_plan_time_naming_the_field(hparams: dict, message: str) -> None:
    with pytest.raises(SpecError) as err:
        planned(hparams)
    assert f"domains.digits-mlp.hparams (mlp): {message}" in str(err.value)


def test_a_cooldown_leaves_wsd_stable_phase_for_a_linear_decay_to_the_floor() -> None:
    hp = schedule("wsd")  # warm-up 10, stable to step 90, decay to 110
    assert hp.cooldown_steps(50) == 10  # 40 stable steps so far: the 20 % decay a budget ending here would have
    assert hp.cooldown_steps(22) == 3  # 12 x 0.25, rounded up
    assert hp.cooldown_steps(11) == 1  # at least one step
    assert hp.cooldown_steps(5) is None and hp.cooldown_steps(95) is None  # warming up; already decaying
    assert schedule("cosine").cooldown_steps(50) is None and schedule("constant").cooldown_steps(50) is None
    assert HParams(lr=1.0, schedule="wsd").cooldown_steps(50) is None  # no budget: no stable phase to leave
    cooled = [hp.lr_at(s, cooldown=(50, 10)) for s in (49, 50, 54, 59, 90)]
    assert cooled == pytest.approx([1.0, 0.91, 0.55, 0.1, 0.1])  # as before, then linear to lr_floor, then held


def test_a_restored_task_continues_its_cooldown(tmp_path: Path) -> None:
    hp = {"lr": 0.1, "warmup_steps": 2, "decay_steps": 40, "schedule": "wsd"}
    whole = digits_task(tmp_path, hp)
    rates(whole, 12)
    assert whole.start_cooldown(max_steps=40) and whole.cooldown_end == 12 + 3  # 10 x 0.2 / 0.8 = 2.5, rounded up
    assert not whole.start_cooldown(max_steps=40)  # one cooldown a trial
    state = whole.state_dict()
    resumed = digits_task(tmp_path, hp)
    resumed.load_state_dict(state)
    assert rates(whole, 4) == rates(resumed, 4) == pytest.approx([0.07, 0.04, 0.01, 0.01])
    capped = digits_task(tmp_path, hp)
    rates(capped, 30)
    assert capped.start_cooldown(max_steps=31) and capped.cooldown_end == 31  # never past the budget
