"""Run a sweep: validate, prepare data once, then one Ray Tune Tuner with per-group ASHA.

A sweep is resumable by running it again. If Tune's experiment state exists it is restored (unfinished and
errored trials continue from their checkpoints, the per-group ASHA rungs come back from storage); any planned
trial still missing from the results store afterwards runs in a top-up round. Tune state torn by a killed driver
is set aside (see ``restorable``). Results are keyed by the trial's deterministic key, so whatever the
interruption, each trial ends as exactly one row.
"""

from __future__ import annotations

import json
import logging
import os
import pickletools
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
from ray import tune
from ray.tune.search import Searcher

from fitting.store import ResultsStore
from orchestrator.adaptive.searcher import AdaptiveSearcher, candidate_spec, load_state
from orchestrator.adaptive.spec import AdaptiveStrategy
from orchestrator.contract import PLAN_KEY, TrialPlan, TrialReport
from orchestrator.dashboard_metrics import DashboardMetrics
from orchestrator.data_parallel import DRIVER_RESOURCES, ReleaseWorkers
from orchestrator.errors import SweepStopped
from orchestrator.group_asha import GroupedASHAScheduler
from orchestrator.halving_advice import async_halving_warning, configurations_per_group
from orchestrator.lease import StorageLease
from orchestrator.plan import ResolvedDomain, group_key, plan_trials, resolve_domains
from orchestrator.progress import ProgressDisplay
from orchestrator.ray_address import choose_target, probe
from orchestrator.ray_internals import EXPERIMENT_STATE_PREFIX, TUNER_STATE, state_file_kind
from orchestrator.recorder import (
    ResultsRecorder,
    StopRequested,
    clear_stop,
    request_stop,
    stop_reason,
)
from orchestrator.spec import SpecError, SweepSpec, parse_spec
from orchestrator.spec_changes import incompatible_changes
from orchestrator.trainable import run_trial
from orchestrator.trial_loop import CHECKPOINTS_KEPT
from sweepstore import child_uri, local_dir, redact, resolve, write_atomic

log = logging.getLogger(__name__)

TUNE_DIR = "tune"
CACHE_DIR = "cache"
# Per-group ASHA state lives beside Tune's experiment folder, not in it: on restore Tune copies every *.pkl/*.json
# of that folder into its staging area and uploads the staging area again on each snapshot, which would overwrite
# the live state with the stale copy.
ASHA_STATE_SUFFIX = ".grouped_asha.pkl"


@dataclass(frozen=True)
class GroupKey:
    """Picklable group function for the scheduler (Tune pickles its config)."""

    fields: tuple[str, ...]

    def __call__(self, config: dict[str, Any]) -> tuple[Any, ...]:
        return group_key(TrialPlan.of(config), self.fields)


@dataclass
class SweepOutcome:
    storage: str
    planned: int
    ran: int
    skipped: int
    tune_seconds: float = 0.0  # wall time spent in Tuner.fit (excludes Ray start-up and data preparation)
    stop: str | None = None  # an adaptive sweep: why it stopped (targets met, budget spent, grid exhausted)


def trial_name(trial: Any) -> str:
    """Dashboard name: domain/family/shard/width/seed plus Tune's short id."""
    return f"{TrialPlan.of(trial.config).label}_{trial.trial_id}"


def trial_dirname(trial: Any) -> str:
    return f"{TrialPlan.of(trial.config).trial_key}_{trial.trial_id}"


def prepare_domains(domains: dict[str, ResolvedDomain], storage: str) -> dict[str, Any]:
    """Each domain's data, read and preprocessed once per sweep (cached on disk for the next run)."""
    local = local_dir(storage)
    cache_root = (local / CACHE_DIR) if local else Path.home() / ".cache" / "scaling-sweep"
    return {name: rd.plugin.prepare(rd.source, cache_root / name) for name, rd in domains.items()}


def init_ray(num_cpus: int | None = None, address: str | None = None) -> bool:
    """Join the cluster at ``address`` (``--address``) or ``RAY_ADDRESS`` (as under ``ray job submit``), else start
    a Ray of our own in-process: never the last cluster named in Ray's address file, which a head killed by a
    signal leaves behind (``orchestrator.ray_address``). A given address that does not answer fails in seconds.

    Returns True for a local, in-process Ray (fixed resources, no autoscaler)."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    target = choose_target(address)
    if ray.is_initialized():
        return target.local
    if target.local:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=True)
        return True
    probe(target)
    ray.init(address=target.address, logging_level=logging.WARNING)
    return False


def fit_to_cluster(trials: list[TrialPlan], local_ray: bool) -> list[TrialPlan]:
    """On a local Ray without GPUs, run GPU-sized trials on CPU instead of queueing them forever.

    On a real cluster GPU requests stay: an autoscaler adds GPU nodes when trials ask for them."""
    if not local_ray or ray.cluster_resources().get("GPU", 0) > 0:
        return trials
    if any(t.resources.get("gpu") for t in trials):
        log.warning("no GPU on this machine: trials that asked for GPUs run on CPU")
    return [replace(t, resources={**t.resources, "gpu": 0.0}) for t in trials]


SPECS_DIR = "specs"


def save_spec(spec: SweepSpec, storage: str) -> None:
    """Keep the spec beside its results, so ``scaling-sweep resume STORAGE`` needs nothing else."""
    fs, root = resolve(storage)
    fs.create_dir(f"{root}/{SPECS_DIR}", recursive=True)
    body = spec.model_copy(update={"storage": storage}).model_dump_json(by_alias=True, indent=1)
    write_atomic(fs, f"{root}/{SPECS_DIR}/{spec.name}.json", body.encode())  # a torn spec would block resume


def load_saved_spec(storage: str, name: str | None = None) -> SweepSpec:
    """The spec a sweep under ``storage`` was started with (the only one, or the one called ``name``)."""
    fs, root = resolve(storage)
    infos = fs.get_file_info(pafs.FileSelector(f"{root}/{SPECS_DIR}", allow_not_found=True))
    names = sorted(i.base_name.removesuffix(".json") for i in infos if i.base_name.endswith(".json"))
    if not names:
        raise SpecError(f"no sweep was started under {storage} (no {SPECS_DIR}/*.json there)")
    if name is None and len(names) > 1:
        raise SpecError(f"several sweeps under {storage}; pick one with --name: {', '.join(names)}")
    chosen = name or names[0]
    if chosen not in names:
        raise SpecError(f"--name: no sweep {chosen!r} under {storage}; allowed: {', '.join(names)}")
    with fs.open_input_stream(f"{root}/{SPECS_DIR}/{chosen}.json") as f:
        return parse_spec(json.loads(f.read()), f"{storage}/{SPECS_DIR}/{chosen}.json")


def asha_state_uri(storage: str, name: str) -> str:
    """Where experiment ``name`` keeps its per-group ASHA state: a path, or a URI with the storage's options."""
    return child_uri(storage, f"{TUNE_DIR}/{name}{ASHA_STATE_SUFFIX}")


def intact(data: bytes) -> bool:
    """Whether a Tune state file is whole: JSON that parses, or a pickle whose opcodes run to STOP (checked
    without unpickling). Tune keeps both under ``.json`` names (its searcher state is a pickle)."""
    try:
        json.loads(data)
        return True
    except ValueError:
        pass
    try:
        for _ in pickletools.genops(data):
            pass
        return True
    except Exception:  # truncated, or not a pickle at all: whatever does not parse counts as torn
        return False


def state_files(experiment: str, fs: pafs.FileSystem) -> list[pafs.FileInfo]:
    """The files of Tune's snapshot in ``experiment``: the ones Tune reads on restore. Its scratch files
    (".<uuid>-tmp-<name>", renamed into place once written) are never read; one a kill or a mid-write upload left
    behind is no reason to set anything aside."""
    return [info for info in fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
            if info.type == pafs.FileType.File and info.base_name.endswith((".json", ".pkl"))
            and not info.base_name.startswith(".")]


def snapshot_complete(names: set[str]) -> bool:
    """Whether these state files are enough for ``Tuner.restore``: the Tuner's own and an experiment state."""
    return TUNER_STATE in names and any(n.startswith(EXPERIMENT_STATE_PREFIX) for n in names)


def restorable(experiment: str, fs: pafs.FileSystem) -> bool:
    """Whether Tune can pick this experiment up again; state files torn by a killed driver are set aside first.

    Tune uploads its snapshot (``experiment_state-*.json``, searcher and callback state) to storage with a plain
    copy, so a driver killed mid-upload can leave a truncated file. Tune's restore then fails, logs "Failed to
    restore the run state" and restarts the experiment without its param_space (``Tuner.restore`` keeps none),
    so no trial runs. Tune reads the newest file of each kind (by name: they end in the session's timestamp);
    a torn one is renamed to ``*.torn`` so Tune falls back to the next. With no whole experiment state left, the
    caller starts a fresh Tune experiment (the results store keeps every finished trial)."""
    if not tune.Tuner.can_restore(experiment, storage_filesystem=fs):
        return False
    kinds: dict[str, list[pafs.FileInfo]] = {}
    for info in state_files(experiment, fs):
        kinds.setdefault(state_file_kind(info.base_name), []).append(info)
    whole: set[str] = set()
    for infos in kinds.values():
        for info in sorted(infos, key=lambda i: i.base_name, reverse=True):
            with fs.open_input_stream(info.path) as f:
                if intact(f.read()):
                    whole.add(info.base_name)
                    break
            log.warning("Tune state file %s was torn by the interruption; set aside as %s.torn", info.base_name,
                        info.base_name)
            fs.move(info.path, f"{info.path}.torn")
    if not snapshot_complete(whole):
        log.warning("Tune experiment %s has no whole state to restore; unfinished trials start afresh", experiment)
        return False
    return True


def restore_tuner(experiment: str, trainable: Any, fs: pafs.FileSystem) -> tune.Tuner | None:
    """The interrupted Tune experiment with its per-group ASHA state, or None when there is nothing to restore."""
    if not restorable(experiment, fs):
        return None
    log.warning("resuming sweep from %s", experiment)
    return tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True,
                              storage_filesystem=fs)


def _scheduler(spec: SweepSpec, state_path: str | None, results_uri: str,
               trials: list[TrialPlan] | None = None) -> tune.schedulers.TrialScheduler:
    """Per-group ASHA (or, with ``synchronous``, per-group successive halving over ``trials``, the run's plan),
    or first-in-first-out when early stopping is off."""
    rungs = {d.early_stopping.model_dump_json(exclude={"max_steps", "eval_every", "patience", "min_delta"})
             for d in spec.domains.values()}
    if len(rungs) > 1:
        # Tune takes one scheduler per run; domains may differ in data and trial stopping, not in ASHA's rungs.
        raise SpecError("all domains of one sweep must share early_stopping grace_period, reduction_factor, "
                        "brackets, group_by and enabled; run them as separate sweeps")
    stopping = next(iter(spec.domains.values())).early_stopping
    if not stopping.enabled:
        return RecordedFIFOScheduler(results_uri)
    group = GroupKey(stopping.group_by)
    # configurations (not seeds) per group: what each group's first rung waits for
    sizes = configurations_per_group(trials or (), stopping.group_by) if stopping.synchronous else None
    return GroupedASHAScheduler(group, time_attr=TrialReport.TIME_ATTR,
                                metric=TrialReport.OBJECTIVE, mode="min",
                                max_t=max(d.max_steps() for d in spec.domains.values()),
                                grace_period=stopping.grace_steps(), reduction_factor=stopping.reduction_factor,
                                brackets=stopping.brackets, state_path=state_path,
                                synchronous=stopping.synchronous, group_sizes=sizes,
                                max_running=spec.max_concurrent_trials if stopping.synchronous else None)


def _advise_halving(spec: SweepSpec, trials: list[TrialPlan]) -> None:
    """Warn before a grid sweep starts when async ASHA would judge a group's trials a few at a time."""
    stopping = next(iter(spec.domains.values())).early_stopping  # one scheduler per sweep (``_scheduler``)
    if not stopping.enabled or stopping.synchronous:
        return
    warning = async_halving_warning(trials, stopping.group_by, ray.cluster_resources(), spec.max_concurrent_trials)
    if warning:
        log.warning("%s", warning)


class RecordedFIFOScheduler(tune.schedulers.FIFOScheduler):
    """First in, first out (no early stopping), except that a restored trial whose row is already in the results
    store is not trained again: it finished after Tune's last snapshot, before the driver died (per-group ASHA
    does the same from its own state)."""

    def __init__(self, results_uri: str) -> None:
        super().__init__()
        self.results_uri = results_uri
        self._recorded: set[str] | None = None  # read at the first trial of this driver, not when pickled

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_recorded": None}

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if self._recorded is None:
            rows = ResultsStore(self.results_uri).read_results().to_pylist()
            self._recorded = {r["trial_id"] for r in rows if r.get("trial_id")}
        if trial.trial_id in self._recorded and not trial.is_finished():
            log.warning("trial %s had finished before the sweep was interrupted; not running it again", trial)
            trial.set_status(trial.TERMINATED)
            return
        super().on_trial_add(tune_controller, trial)


def trial_resources(config: dict[str, Any]) -> dict[str, float]:
    """Per-trial resource request, so domains of one sweep can ask for different CPUs and GPUs.

    A data-parallel trial (``workers`` > 1) only drives a Ray Train run: it holds a sliver of a CPU, and its
    workers ask Ray for the CPUs and GPUs themselves (``orchestrator.data_parallel``)."""
    plan = TrialPlan.of(config)
    return dict(DRIVER_RESOURCES) if plan.data_parallel else dict(plan.resources)


def make_tuner(spec: SweepSpec, trainable: Any, trials: Iterable[TrialPlan], name: str, storage_path: str,
               storage_fs: pafs.FileSystem, callbacks: list[Any], scheduler: Any, results_uri: str,
               reuse_actors: bool = True, search_alg: Searcher | None = None) -> tune.Tuner:
    """The sweep's Tuner: one grid point per planned trial (or, with ``search_alg``, the trials it picks from them
    one at a time until it says it is finished), actors reused between trials. ``ReleaseWorkers``
    makes sure the workers of a stopped data-parallel trial give their resources back; ``StopRequested``
    ends the run once trial results cannot be written to ``results_uri`` or another driver took it over."""
    if search_alg is None:
        space: dict[str, Any] = {PLAN_KEY: tune.grid_search([t.to_config() for t in trials])}
        search: dict[str, Any] = {}
    else:  # the searcher hands out whole plans; it ends the run by answering FINISHED
        space, search = {}, {"search_alg": search_alg, "num_samples": -1}
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=reuse_actors,
                                    # paused trials count against Tune's limit: halving enforces it itself
                                    max_concurrent_trials=None if getattr(scheduler, "synchronous", False)
                                    else spec.max_concurrent_trials,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_dirname, **search),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=storage_fs,
            callbacks=[*callbacks, ReleaseWorkers()], verbose=0, stop=StopRequested(results_uri),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT)),
    )


def saved_spec(storage: str, name: str) -> SweepSpec | None:
    """The spec sweep ``name`` was last run with under ``storage``, or None when it never ran there."""
    fs, root = resolve(storage)
    if fs.get_file_info(f"{root}/{SPECS_DIR}/{name}.json").type != pafs.FileType.File:
        return None
    return load_saved_spec(storage, name)


def check_spec_change(spec: SweepSpec, storage: str, allow: bool = False) -> None:
    """Refuse an edited spec that would mix incompatible trials into the stored curves (``spec_changes``)."""
    before = saved_spec(storage, spec.name)
    changes = incompatible_changes(before, spec) if before is not None else []
    if not changes:
        return
    listing = "\n".join(f"  {c}" for c in changes)
    if allow:
        log.warning("sweep %r changed incompatibly since its last run under %s (allowed):\n%s", spec.name, storage,
                    listing)
        return
    raise SpecError(f"sweep {spec.name!r} under {storage} was run with another spec; these changes would mix "
                    f"incompatible trials into its curves:\n{listing}\nName a new storage (--storage), or pass "
                    f"--allow-spec-change to keep the stored trials and add the new ones anyway. Compatible changes "
                    f"(more seeds, shards, widths, grid values, samples; other resources) top the sweep up.")


def run_sweep(spec: SweepSpec, spec_dir: Path | None = None, progress: bool = True,
              num_cpus: int | None = None, reuse_actors: bool = True, address: str | None = None,
              takeover: bool = False, allow_spec_change: bool = False) -> SweepOutcome:
    """Run (or resume) a sweep to the end; every trial lands in ``<storage>/results``.

    One driver per storage (``orchestrator.lease``); an edited spec must be a top-up of the stored one unless
    ``allow_spec_change``; a store that cannot be written, or a lease taken over, stops it with ``SweepStopped``."""
    domains = resolve_domains(spec)  # spec errors surface before any data is read or Ray starts
    storage = spec.storage_uri(spec_dir)
    store = ResultsStore(storage)
    store.check_writable()
    check_spec_change(spec, storage, allow_spec_change)
    probe(choose_target(address))  # a dead cluster address fails in seconds, before data is prepared
    lease = StorageLease(storage, spec.name, on_lost=lambda holder: request_stop(
        storage, f"another driver took the storage over ({holder}); one driver per storage"))
    lease.acquire(takeover=takeover)
    try:
        return _run_leased(spec, domains, storage, store, progress, num_cpus, reuse_actors, address)
    finally:
        lease.release()


def _run_leased(spec: SweepSpec, domains: dict[str, ResolvedDomain], storage: str, store: ResultsStore,
                progress: bool, num_cpus: int | None, reuse_actors: bool, address: str | None) -> SweepOutcome:
    adaptive = spec.strategy if isinstance(spec.strategy, AdaptiveStrategy) else None
    # an adaptive sweep picks from the planned grid (and the spec's extra widths): the same trial keys
    pool = candidate_spec(spec) if adaptive else spec
    trials = plan_trials(pool, resolve_domains(pool) if adaptive else domains)
    prepared = prepare_domains(domains, storage)  # a missing dataset fails here, before trials are queued
    # again with the shards' real sizes: train_size, and budgets in epochs as steps of each shard
    trials = plan_trials(pool, resolve_domains(pool) if adaptive else domains, prepared)

    local_ray = init_ray(num_cpus, address)
    trials = fit_to_cluster(trials, local_ray)
    save_spec(spec, storage)
    refs = {name: ray.put(p) for name, p in prepared.items()}
    trainable = tune.with_resources(tune.with_parameters(run_trial, prepared_refs=refs), trial_resources)
    fs, root = resolve(storage)  # Tune gets the same pyarrow filesystem (URI query options such as endpoints kept)
    tune_path = f"{root}/{TUNE_DIR}"
    experiment = f"{tune_path}/{spec.name}"
    clear_stop(storage)

    def callbacks(total: int, searcher: AdaptiveSearcher | None = None) -> list[Any]:
        live = searcher.status_lines if searcher else None
        cbs: list[Any] = [ResultsRecorder(storage), DashboardMetrics(searcher.figures if searcher else None)]
        if progress:
            cbs.append(ProgressDisplay(total, extra=live))
        return cbs

    def fit(tuner: tune.Tuner) -> None:
        try:
            tuner.fit()
        except Exception as exc:
            # Tune's own state or checkpoints could not be written; or, once the results store failed, Tune trips
            # over files the full store cut short (its error pickles) while it collects the run's results
            if not isinstance(exc, OSError) and not stop_reason(storage):
                raise
            reason = stop_reason(storage) or f"storage {redact(storage)} cannot be written ({exc}); free space or " \
                                             f"fix access"
            raise SweepStopped(f"the sweep stopped: {reason}. Stored rows are whole; then run "
                               f"`scaling-sweep resume {redact(storage)}` to finish the rest") from exc
        reason = stop_reason(storage)
        if reason:
            raise SweepStopped(f"the sweep stopped: {reason}. Stored rows are whole; then run "
                               f"`scaling-sweep resume {redact(storage)}` to finish the rest")

    ran = 0
    started = time.monotonic()
    before = store.finished_keys()
    restored = restore_tuner(experiment, trainable, fs)
    if restored is not None:
        fit(restored)
        ran += 1
    done = store.finished_keys()
    if adaptive is not None:
        searcher = AdaptiveSearcher(trials, adaptive, storage, spec.name, adaptive.extra_widths)
        if not searcher.finished:  # a fresh sweep, or one whose restored Tune run left decisions unfinished
            name = spec.name if ran == 0 else f"{spec.name}-topup-{len(done)}"
            fit(make_tuner(spec, trainable, [], name, tune_path, fs, callbacks(0, searcher),
                           _scheduler(spec, asha_state_uri(storage, name), storage), storage, reuse_actors=reuse_actors,
                           search_alg=searcher))
        after = store.finished_keys()
        state = load_state(storage, spec.name) or {}
        return SweepOutcome(storage=storage, planned=len(trials), ran=len(after - before),
                            skipped=len(before), tune_seconds=time.monotonic() - started, stop=state.get("finished"))
    todo = [t for t in trials if t.trial_key not in done]
    _advise_halving(spec, todo)
    if todo:
        name = spec.name if ran == 0 else f"{spec.name}-topup-{len(done)}"
        fit(make_tuner(spec, trainable, todo, name, tune_path, fs, callbacks(len(todo)),
                       _scheduler(spec, asha_state_uri(storage, name), storage, todo), storage,
                       reuse_actors=reuse_actors))
    return SweepOutcome(storage=storage, planned=len(trials), ran=len(todo), skipped=len(trials) - len(todo),
                        tune_seconds=time.monotonic() - started)
