"""Per-group ASHA: Ray's own decisions inside a group, no competition across groups, state survives restore."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from fitting.store import ResultsStore
from orchestrator.group_asha import GroupedASHAScheduler, load_state
from orchestrator.runner import GroupKey, asha_state_uri, run_sweep
from orchestrator.spec import parse_spec
from sweepstore import resolve
from tests.orchestrator.plans import make_plan, stub_trial
from tests.orchestrator.test_sweep import spec_data, stored
from tests.orchestrator.test_sync_halving import halving_by_hand

ASHA = dict(time_attr="steps", metric="objective", mode="min", max_t=81, grace_period=1, reduction_factor=3)
FIELDS = ("domain", "family", "fraction", "width")


def make_trial(trial_id: str, fraction: float = 1.0, width: int = 32) -> Trial:
    return stub_trial(make_plan(trial_id, fraction=fraction, width=width))


def random_results(n_trials: int, seed: int) -> list[tuple[int, int, float]]:
    """Interleaved (trial index, steps, objective) reports, as trials running in parallel would send them."""
    rng = random.Random(seed)
    quality = [rng.uniform(1, 5) for _ in range(n_trials)]
    steps = [0] * n_trials
    events = []
    for _ in range(n_trials * 30):
        i = rng.randrange(n_trials)
        steps[i] += rng.choice([1, 2, 3])
        events.append((i, steps[i], quality[i] + 3.0 / steps[i] + rng.gauss(0, 0.1)))
    return events


def test_single_group_decisions_equal_rays_asha_on_the_best_so_far() -> None:
    """With one seed per configuration, every decision is Ray's own, fed each trial's best value so far."""
    for seed in range(5):
        trials = [make_trial(f"t{i}") for i in range(12)]
        ours = GroupedASHAScheduler(GroupKey(FIELDS), **ASHA)
        rays = AsyncHyperBandScheduler(**ASHA)
        for t in trials:
            ours.on_trial_add(None, t)
            rays.on_trial_add(None, t)
        stopped: set[int] = set()
        best: dict[int, float] = {}
        decisions = 0
        for i, steps, value in random_results(len(trials), seed):
            if i in stopped:
                continue
            best[i] = min(value, best.get(i, value))
            a = ours.on_trial_result(None, trials[i], {"steps": steps, "objective": value})
            b = rays.on_trial_result(None, trials[i], {"steps": steps, "objective": best[i]})
            assert a == b, f"seed {seed}: trial {i} at step {steps}: ours {a}, Ray's {b}"
            decisions += 1
            if a == TrialScheduler.STOP:
                stopped.add(i)
        assert decisions > 50
        assert 0 < len(stopped) < len(trials)  # the comparison exercised both outcomes


def test_groups_never_compete() -> None:
    """A small shard's trial, far worse than every full-data trial, is judged only against its own group."""
    sched = GroupedASHAScheduler(GroupKey(FIELDS), **ASHA)
    big = [make_trial(f"big{i}", fraction=1.0) for i in range(6)]
    small = make_trial("small", fraction=1 / 64)
    for t in [*big, small]:
        sched.on_trial_add(None, t)
    for steps in (1, 3, 9, 27):
        for i, t in enumerate(big):
            sched.on_trial_result(None, t, {"steps": steps, "objective": 1.0 + 0.01 * i})
    for steps in (1, 3, 9, 27, 81):
        action = sched.on_trial_result(None, small, {"steps": steps, "objective": 100.0})
        if steps < 81:
            assert action == TrialScheduler.CONTINUE
    assert sched.group_count() == 2

    # the same trial under Ray's single ASHA is stopped at its first rung: the bug this scheduler exists for
    rays = AsyncHyperBandScheduler(**ASHA)
    for t in [*big, small]:
        rays.on_trial_add(None, t)
    for i, t in enumerate(big):
        rays.on_trial_result(None, t, {"steps": 1, "objective": 1.0 + 0.01 * i})
    assert rays.on_trial_result(None, small, {"steps": 1, "objective": 100.0}) == TrialScheduler.STOP


def test_group_key_is_configurable() -> None:
    sched = GroupedASHAScheduler(GroupKey(("domain", "family")), **ASHA)
    trials = [make_trial(f"w{w}", width=w) for w in (8, 16, 32, 64)]
    for t in trials:
        sched.on_trial_add(None, t)
    assert sched.group_count() == 1  # widths compete when the user asks for it


def test_state_persists_and_restores(tmp_path) -> None:
    state = tmp_path / "asha.pkl"
    sched = GroupedASHAScheduler(GroupKey(FIELDS), state_path=str(state), **ASHA)
    trials = [make_trial(f"t{i}") for i in range(4)]
    for t in trials:
        sched.on_trial_add(None, t)
    for i, t in enumerate(trials[:3]):
        sched.on_trial_result(None, t, {"steps": 1, "objective": float(i)})
    assert state.is_file()

    # Tuner.restore unpickles the scheduler as it was at the start; the rungs must come back from disk.
    fresh = GroupedASHAScheduler(GroupKey(FIELDS), state_path=str(state), **ASHA)
    restored = pickle.loads(pickle.dumps(fresh))
    assert restored.group_count() == 1
    restored.on_trial_add(None, trials[3])
    # with rungs restored, a bad fourth trial is stopped at the first rung (cutoff from the other three)
    assert restored.on_trial_result(None, trials[3], {"steps": 1, "objective": 10.0}) == TrialScheduler.STOP
    # a scheduler that lost its state would have let it continue
    amnesiac = GroupedASHAScheduler(GroupKey(FIELDS), **ASHA)
    amnesiac.on_trial_add(None, trials[3])
    assert amnesiac.on_trial_result(None, trials[3], {"steps": 1, "objective": 10.0}) == TrialScheduler.CONTINUE


def feed(sched: GroupedASHAScheduler, trials: list[Trial]) -> None:
    """Three trials reach the first rung (steps 1) with objectives 0, 1, 2; the fourth only joins."""
    for t in trials:
        sched.on_trial_add(None, t)
    for i, t in enumerate(trials[:3]):
        sched.on_trial_result(None, t, {"steps": 1, "objective": float(i)})


def rung_entries(state: dict) -> dict:
    return {(key, milestone, tid): v for key, attrs in state["groups"].items()
            for b in attrs["_brackets"] for milestone, recorded in b._rungs for tid, v in recorded.items()}


def test_state_is_written_only_when_rungs_or_membership_change(tmp_path) -> None:
    state = tmp_path / "asha.pkl"
    sched = GroupedASHAScheduler(GroupKey(FIELDS), state_path=str(state), **ASHA)
    trials = [make_trial(f"t{i}") for i in range(3)]
    for t in trials:
        sched.on_trial_add(None, t)
    assert not state.exists()  # adding trials alone writes nothing

    def inode() -> int:  # every write is temp file + rename: a new inode
        return state.stat().st_ino

    sched.on_trial_result(None, trials[0], {"steps": 1, "objective": 1.0})  # rung 1 entry: written
    first = inode()
    sched.on_trial_result(None, trials[0], {"steps": 2, "objective": 0.9})  # between rungs: nothing to save
    assert inode() == first
    sched.on_trial_result(None, trials[0], {"steps": 3, "objective": 0.8})  # rung 3: written
    third = inode()
    assert third != first
    sched.on_trial_result(None, trials[1], {"steps": 2, "objective": 0.7})  # passes rung 1 on its way: written
    assert inode() != third
    before = inode()
    sched.on_trial_complete(None, trials[2], {"steps": 2, "objective": 5.0})  # completion: always written
    assert inode() != before
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind
    assert load_state(str(state))["completed"] == {"t2"}


def test_state_on_a_file_uri_and_the_scheduler_pickles_without_a_filesystem(tmp_path) -> None:
    uri = (tmp_path / "nested" / "asha.pkl").as_uri()  # file:///...; the parent folder does not exist yet
    sched = GroupedASHAScheduler(GroupKey(FIELDS), state_path=uri, **ASHA)
    trials = [make_trial(f"t{i}") for i in range(4)]
    feed(sched, trials)
    assert sched._fs is not None and sched.__getstate__()["_fs"] is None
    restored = pickle.loads(pickle.dumps(GroupedASHAScheduler(GroupKey(FIELDS), state_path=uri, **ASHA)))
    assert rung_entries(restored._state()) == rung_entries(load_state(uri)) and len(rung_entries(load_state(uri))) == 3
    restored.on_trial_add(None, trials[3])
    assert restored.on_trial_result(None, trials[3], {"steps": 1, "objective": 10.0}) == TrialScheduler.STOP


def test_finished_trials_are_not_resumed_after_restore(tmp_path) -> None:
    """Tune's last snapshot may predate a trial's end; the restored scheduler must not let it train again."""
    state = str(tmp_path / "asha.pkl")
    sched = GroupedASHAScheduler(GroupKey(FIELDS), state_path=state, **ASHA)
    trials = [make_trial(f"t{i}") for i in range(4)]
    feed(sched, trials)
    assert sched.on_trial_result(None, trials[3], {"steps": 1, "objective": 9.0}) == TrialScheduler.STOP
    sched.on_trial_complete(None, trials[3], {"steps": 1, "objective": 9.0})  # ASHA stopped it: finished

    restored = pickle.loads(pickle.dumps(GroupedASHAScheduler(GroupKey(FIELDS), state_path=state, **ASHA)))
    # Tune re-adds every trial of its snapshot; the stopped one is still PENDING there, as after a kill
    again = [Trial("__fake", config=t.config, trial_id=t.trial_id, stub=True) for t in trials]
    for t in again:
        t.set_status(Trial.PENDING)
        restored.on_trial_add(None, t)
    assert again[3].status == Trial.TERMINATED
    assert [t.status for t in again[:3]] == [Trial.PENDING] * 3
    # the unfinished ones keep their bracket; the finished one does not rejoin it
    assert set(restored._groups[restored._group_of_trial["t0"]]._trial_info) == {"t0", "t1", "t2"}


def test_state_on_s3() -> None:
    """The same state through a real S3 endpoint (moto's server), addressed by a URI with query options."""
    from tests.s3_server import s3_bucket

    with s3_bucket() as template:
        uri = asha_state_uri(template.format(prefix="sweeps/unit"), "exp")
        assert "/sweeps/unit/tune/exp.grouped_asha.pkl?endpoint_override=" in uri
        sched = GroupedASHAScheduler(GroupKey(FIELDS), state_path=uri, **ASHA)
        trials = [make_trial(f"t{i}") for i in range(4)]
        feed(sched, trials)
        sched.on_trial_complete(None, trials[0], {"steps": 1, "objective": 0.0})

        restored = pickle.loads(pickle.dumps(GroupedASHAScheduler(GroupKey(FIELDS), state_path=uri, **ASHA)))
        assert restored._completed == {"t0"}
        assert rung_entries(restored._state()) == rung_entries(sched._state())
        restored.on_trial_add(None, trials[3])
        assert restored.on_trial_result(None, trials[3], {"steps": 1, "objective": 10.0}) == TrialScheduler.STOP
        fs, path = resolve(uri)  # one object, no temp objects beside it
        listing = fs.get_file_info(pafs.FileSelector(path.rpartition("/")[0]))
        assert [i.base_name for i in listing] == ["exp.grouped_asha.pkl"]


def test_rungs_rank_the_best_value_so_far_not_the_latest() -> None:
    """A trial whose best is the group's best survives a bad evaluation at a rung; ranked on its latest value
    (Ray's ASHA alone) it is stopped."""
    others = [make_trial(f"o{i}") for i in range(3)]
    spiky = make_trial("spiky")
    ours, rays = GroupedASHAScheduler(GroupKey(FIELDS), **ASHA), AsyncHyperBandScheduler(**ASHA)
    for sched in (ours, rays):
        for t in [*others, spiky]:
            sched.on_trial_add(None, t)
        for steps in (1, 3):
            for i, t in enumerate(others):
                sched.on_trial_result(None, t, {"steps": steps, "objective": 1.0 + 0.1 * i})
        assert sched.on_trial_result(None, spiky, {"steps": 1, "objective": 0.5}) == TrialScheduler.CONTINUE
    assert ours.on_trial_result(None, spiky, {"steps": 3, "objective": 5.0}) == TrialScheduler.CONTINUE
    assert rays.on_trial_result(None, spiky, {"steps": 3, "objective": 5.0}) == TrialScheduler.STOP


def seeds_of(config: str, n: int = 2) -> list[Trial]:
    return [stub_trial(make_plan(f"{config}-s{s}", config_key=config, seed=s)) for s in range(n)]


def test_seeds_of_a_configuration_never_compete() -> None:
    """Two seeds of one configuration, one far worse: one unit for ASHA, so neither stops the other."""
    good, bad = seeds_of("c")
    sched = GroupedASHAScheduler(GroupKey(FIELDS), **ASHA)
    for t in (good, bad):
        sched.on_trial_add(None, t)
    for steps in (1, 3, 9):
        assert sched.on_trial_result(None, good, {"steps": steps, "objective": 1.0}) == TrialScheduler.CONTINUE
        assert sched.on_trial_result(None, bad, {"steps": steps, "objective": 3.0}) == TrialScheduler.CONTINUE
    assert set(sched._groups[sched._group_of_trial[good.trial_id]]._trial_info) == {"c"}

    rays = AsyncHyperBandScheduler(**ASHA)  # the seeds as separate trials: the worse one is cut at the first rung
    for t in (good, bad):
        rays.on_trial_add(None, t)
    rays.on_trial_result(None, good, {"steps": 1, "objective": 1.0})
    assert rays.on_trial_result(None, bad, {"steps": 1, "objective": 3.0}) == TrialScheduler.STOP


def test_a_configuration_is_judged_by_the_median_of_its_seeds_and_stops_as_one(tmp_path) -> None:
    state = str(tmp_path / "asha.pkl")
    sched = GroupedASHAScheduler(GroupKey(FIELDS), state_path=state, **ASHA)
    a, c = seeds_of("a"), seeds_of("c")
    for t in (*a, *c):
        sched.on_trial_add(None, t)
    values = {"a": (1.0, 1.2), "c": (0.9, 5.0)}  # c: one lucky seed, median 2.95: worse than a (1.1)
    for trials, config in ((a, "a"), (c, "c")):
        for t, v in zip(trials, values[config], strict=True):
            assert sched.on_trial_result(None, t, {"steps": 1, "objective": v}) == TrialScheduler.CONTINUE
    for t, v in zip(a, values["a"], strict=True):
        sched.on_trial_result(None, t, {"steps": 3, "objective": v})
    # c's lucky seed is the best single trial in the group, yet its configuration's median loses at rung 3
    assert sched.on_trial_result(None, c[0], {"steps": 3, "objective": 0.9}) == TrialScheduler.STOP
    # and its sibling stops there too, also in a scheduler restored from the saved state
    restored = pickle.loads(pickle.dumps(GroupedASHAScheduler(GroupKey(FIELDS), state_path=state, **ASHA)))
    for s in (sched, restored):
        assert s.on_trial_result(None, c[1], {"steps": 2, "objective": 5.0}) == TrialScheduler.CONTINUE
        assert s.on_trial_result(None, c[1], {"steps": 3, "objective": 5.0}) == TrialScheduler.STOP
    sched.on_trial_complete(None, c[0], {"steps": 3, "objective": 0.9})
    assert "c" in sched._groups[sched._group_of_trial["c-s0"]]._trial_info  # c's other seed still runs
    sched.on_trial_complete(None, c[1], {"steps": 3, "objective": 5.0})
    assert "c" not in sched._groups[sched._group_of_trial["c-s0"]]._trial_info  # gone with its last seed


class Controller:
    """What the scheduler asks of Tune's controller: its trials (in the plan's order), and, in synchronous mode,
    to stop one."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials, self.stopped = trials, []

    def get_trials(self) -> list[Trial]:
        return self.trials

    def stop_trial(self, trial: Trial) -> None:
        self.stopped.append(trial.trial_id)
        trial.set_status(Trial.TERMINATED)


def test_trials_start_shuffled_by_configuration_with_seeds_together() -> None:
    """A sorted grid starts in a fixed shuffled order (the same on every call and every driver), each
    configuration's seeds one after another; paused trials come after pending ones, as in FIFO."""
    trials = [t for c in range(12) for t in seeds_of(f"lr{c:02d}")]
    started = []
    for sched in (GroupedASHAScheduler(GroupKey(FIELDS), **ASHA), GroupedASHAScheduler(GroupKey(FIELDS), **ASHA)):
        for t in trials:
            t.set_status(Trial.PENDING)
        order = []
        while (t := sched.choose_trial_to_run(Controller(trials))) is not None:
            assert sched.choose_trial_to_run(Controller(trials)) is t  # idempotent, as Tune requires
            order.append(t.trial_id)
            t.set_status(Trial.RUNNING)
        started.append(order)
    assert started[0] == started[1] and sorted(started[0]) == sorted(t.trial_id for t in trials)
    configs = [tid.rsplit("-s", 1)[0] for tid in started[0]]
    assert configs[::2] == configs[1::2]  # seeds of a configuration start together
    assert configs[::2] != sorted(configs[::2])  # not the grid's order

    paused, pending = trials[0], trials[5]
    for t in trials:
        t.set_status(Trial.TERMINATED)
    paused.set_status(Trial.PAUSED)
    sched = GroupedASHAScheduler(GroupKey(FIELDS), **ASHA)
    assert sched.choose_trial_to_run(Controller(trials)) is paused
    pending.set_status(Trial.PENDING)
    assert sched.choose_trial_to_run(Controller(trials)) is pending


@pytest.mark.slow
def test_synchronous_halving_pauses_trials_at_rungs_and_decides_as_successive_halving(
        corpus_dir: Path, ray_session: None, tmp_path: Path) -> None:
    """A real sweep with ``synchronous: true``: 5 configurations a group on 2 workers. Every group's stops are
    those successive halving makes on the recorded learning curves (best so far at the rungs, steps 10 and 20),
    and the trials it passed ran on from their pause to the budget."""
    data = spec_data(corpus_dir, tmp_path, "sync", shards={"base": 2, "from": -1, "to": 0}, widths=[8],
                     hparams={"batch_size": 8, "bptt": 16, "lr": {"grid": [0.001, 0.003, 0.01, 0.03, 0.1]}},
                     early_stopping={"grace_period": 10, "reduction_factor": 2, "max_steps": 40, "eval_every": 10,
                                     "patience": None, "synchronous": True})
    run_sweep(parse_spec(data), progress=False)
    rows = stored(tmp_path)
    assert len(rows) == 10
    store = ResultsStore(str(tmp_path))
    for fraction in {r["fraction"] for r in rows}:
        group = {r["config_key"]: r for r in rows if r["fraction"] == fraction}
        curves, steps = {}, {}
        for key, r in group.items():
            history = store.read_history(r["trial_key"]).to_pylist()
            steps[key] = [h["steps"] for h in history]
            values = [json.loads(h["metrics"])[r["metric"]] for h in history]
            curves[key] = [min(values[:i + 1]) for i in range(2) if i < len(values)]
        assert all(s == [10 * (i + 1) for i in range(len(s))] for s in steps.values()), steps  # resumed, in order
        expected = halving_by_hand(curves, [10, 20], 2)  # 5 -> 3 -> 2
        assert sorted(expected.values()) == [0, 0, 1, 2, 2]
        assert {k: r["steps"] for k, r in group.items()} == {k: (10, 20, 40)[rung] for k, rung in expected.items()}
        assert {k: r["stop_reason"] for k, r in group.items()} == {
            k: "asha" if rung < 2 else "max_steps" for k, rung in expected.items()}


def report(sched: GroupedASHAScheduler, tune: Controller, trial: Trial, steps: int, value: float) -> str:
    """One result through the scheduler; the trial's status follows the decision as Tune would set it."""
    trial.set_status(Trial.RUNNING)
    action = sched.on_trial_result(tune, trial, {"steps": steps, "objective": value})
    trial.set_status({TrialScheduler.PAUSE: Trial.PAUSED, TrialScheduler.STOP: Trial.TERMINATED}.get(
        action, Trial.RUNNING))
    return action


def test_synchronous_rungs_wait_for_the_group_survive_a_restore_and_resume_the_passed(tmp_path) -> None:
    state = str(tmp_path / "asha.pkl")
    sizes = {GroupKey(FIELDS)(make_trial("a").config): 3}
    sched = GroupedASHAScheduler(GroupKey(FIELDS), state_path=state, synchronous=True, group_sizes=sizes, **ASHA)
    a, b, c = trials = [make_trial(k) for k in "abc"]
    tune = Controller(trials)
    for t in trials:
        sched.on_trial_add(tune, t)
    assert report(sched, tune, a, 1, 0.5) == TrialScheduler.PAUSE  # rung 1 (step 1) waits for b and c
    assert report(sched, tune, b, 1, 2.0) == TrialScheduler.PAUSE
    assert sched.choose_trial_to_run(tune) is c  # nothing paused may resume yet: the pending one starts

    # the driver dies; Tuner.restore unpickles the scheduler as it started, the rungs come back from disk
    restored = pickle.loads(pickle.dumps(
        GroupedASHAScheduler(GroupKey(FIELDS), state_path=state, synchronous=True, group_sizes=sizes, **ASHA)))
    for t in trials:
        restored.on_trial_add(tune, t)
    assert report(restored, tune, c, 1, 1.0) == TrialScheduler.STOP  # 3 reached it: ceil(3 / 3) = 1 goes on
    assert tune.stopped == ["b"]  # the paused loser stops; the winner resumes, before any pending trial
    assert restored.choose_trial_to_run(tune) is a
    assert report(restored, tune, a, 2, 0.4) == TrialScheduler.CONTINUE
    # a is alone at the later rungs: it passes them without waiting
    assert report(restored, tune, a, 3, 0.3) == TrialScheduler.CONTINUE


def test_synchronous_seeds_of_a_configuration_reach_the_rung_together() -> None:
    plans = [make_plan(f"{cfg}-s{seed}", config_key=cfg, seed=seed) for cfg in "xy" for seed in (0, 1)]
    trials = [stub_trial(p) for p in plans]
    x0, x1, y0, y1 = trials
    sched = GroupedASHAScheduler(GroupKey(FIELDS), synchronous=True,
                                 group_sizes={GroupKey(FIELDS)(x0.config): 2}, **ASHA)
    tune = Controller(trials)
    for t in trials:
        sched.on_trial_add(tune, t)
    assert report(sched, tune, x0, 1, 1.0) == TrialScheduler.PAUSE
    assert report(sched, tune, y0, 1, 0.1) == TrialScheduler.PAUSE  # y's second seed is not there: no decision
    assert report(sched, tune, x1, 1, 3.0) == TrialScheduler.PAUSE
    # y's median over seeds (0.1, 5.0) is 2.55, x's (1.0, 3.0) is 2.0: x goes on, both of y's seeds stop
    assert report(sched, tune, y1, 1, 5.0) == TrialScheduler.STOP
    assert tune.stopped == ["y-s0"] and sched.choose_trial_to_run(tune) in (x0, x1)


def test_synchronous_concurrency_limit_counts_training_trials_only() -> None:
    """``max_concurrent_trials`` under synchronous halving: trials not started yet are held (paused, so that Tune
    does not start them itself) and started one at a time; a trial paused at a rung frees its place (Tune's own
    limit would not, and a group larger than the limit would never fill its first rung)."""
    sizes = {GroupKey(FIELDS)(make_trial("a").config): 2}
    sched = GroupedASHAScheduler(GroupKey(FIELDS), synchronous=True, group_sizes=sizes, max_running=1, **ASHA)
    a, b = trials = [make_trial(k) for k in "ab"]
    tune = Controller(trials)
    for t in trials:
        sched.on_trial_add(tune, t)
    assert [t.status for t in trials] == [Trial.PAUSED, Trial.PAUSED]  # held
    first = sched.choose_trial_to_run(tune)
    assert first is not None and sched.choose_trial_to_run(tune) is first  # idempotent, as Tune requires
    other = b if first is a else a
    first.set_status(Trial.PENDING)  # what Tune does with the chosen trial
    assert sched.choose_trial_to_run(tune) is None  # it takes the only place
    assert report(sched, tune, first, 1, 0.5) == TrialScheduler.PAUSE
    assert sched.choose_trial_to_run(tune) is other  # paused at its rung, it frees the place
    assert report(sched, tune, other, 1, 2.0) == TrialScheduler.STOP  # ceil(2 / 3) = 1 goes on
    assert sched.choose_trial_to_run(tune) is first


def test_synchronous_rung_decided_while_a_trial_is_still_saving_its_pause() -> None:
    """Tune keeps a trial told to pause RUNNING until its checkpoint is saved; a rung decided in that window still
    resumes it once it is paused (or stops it, when cut). Seen on a loaded machine: the sweep never ended."""
    sizes = {GroupKey(FIELDS)(make_trial("a").config): 3}
    sched = GroupedASHAScheduler(GroupKey(FIELDS), synchronous=True, group_sizes=sizes, **ASHA)
    a, b, c = trials = [make_trial(k) for k in "abc"]
    tune = Controller(trials)
    for t in trials:
        sched.on_trial_add(tune, t)
    assert report(sched, tune, a, 1, 0.5) == TrialScheduler.PAUSE
    assert report(sched, tune, b, 1, 2.0) == TrialScheduler.PAUSE
    a.set_status(Trial.RUNNING)  # both still saving their checkpoints
    b.set_status(Trial.RUNNING)
    assert report(sched, tune, c, 1, 1.0) == TrialScheduler.STOP  # ceil(3 / 3) = 1 goes on: a
    assert tune.stopped == ["b"]  # Tune stops b once its save resolved
    a.set_status(Trial.PAUSED)  # a's save resolved: it is paused now
    assert sched.choose_trial_to_run(tune) is a
