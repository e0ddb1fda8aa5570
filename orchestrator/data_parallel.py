"""Data-parallel trials: a model that needs several GPUs trains on a Ray Train run inside its Tune trial.

A trial whose width maps to ``workers`` > 1 (``Resources`` in the spec) is only a Train *driver*: the Tune trial
holds ``DRIVER_RESOURCES``, launches a ``TorchTrainer`` whose workers each ask for the spec's ``cpu`` and ``gpu``
(NCCL between GPUs, gloo on CPU), and relays what the workers report to Tune. Every worker builds the domain's
task from the trial's seed (rank 0's weights are broadcast as well, so the replicas start bitwise equal) and joins
it to the others (``Task.join_replicas``): each replica trains on its own share of every batch, and after each
backward pass the gradients and the loss are averaged over the replicas, so all of them take the same optimizer
step and the same divergence decisions. The loop is ``orchestrator.trial_loop.train_loop``, so results keep the
single-process contract (``TrialReport``, patience, divergence, max_steps); ``samples`` counts every replica's
data, rank 0 evaluates, and ``replica_drift`` (spread of a parameter checksum over the replicas, 0 when they
agree bitwise) shows that the averaging holds.

Why not DDP: the speech attention model trains through ``encode``/``decode``/``ctc_log_probs`` rather than
``forward``, and the tasks call their model's own methods (``greedy``, ``init_hidden``) and save its
``state_dict``; a DDP wrapper sees only ``forward`` and renames every key. Averaging in ``Task.synced`` works for
any task that calls it and leaves models and checkpoints as they are; the price is that communication does not
overlap the backward pass.

Checkpoints are Ray Train's: each report stores rank 0's full task state and, per other rank, its own part (data
readers, RNG streams; not model and optimizer, which equal rank 0's) under
``<storage>/tune/data_parallel/<trial_key>``. Train restores a run of the same name from there, so a retried trial,
a resumed sweep and a top-up round all continue from the last checkpoint. A worker that dies fails the run and
so the Tune trial, whose retries (the spec's ``max_failures``) start the run again.

Stopping: the driver hands results to Tune with ``tune.report`` in the trial's own thread, so when ASHA (or the
end of the experiment) stops the trial that call raises, and the driver aborts the Train run at once: workers
exit, their GPUs go back to Ray, and the trial's actor can be reused. (Ray's ``TuneReportCallback`` reports from
Tune's thread instead; the trial function would sit in ``trainer.fit()``, never learn it was stopped, and keep its
workers training.) When Tune ends the actor right after stopping it, the abort can be cut short; ``ReleaseWorkers``,
a callback on the sweep driver, then removes what the workers held. A trial paused at a rung (synchronous halving)
ends its run the same way and resumes on a new one, from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import torch
import torch.distributed as dist
from ray import tune
from ray.actor import ActorHandle
from ray.train.torch import TorchTrainer, get_device
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group
from ray.util.queue import Empty, Queue

from domains.base import Task, TrainStats
from orchestrator.contract import PLAN_KEY, TrialPlan, TrialReport
from orchestrator.ray_internals import registered_checkpoints
from orchestrator.trial_loop import CHECKPOINTS_KEPT, STATE_FILE, build_trial_task, quiet_ray_logs, train_loop

log = logging.getLogger(__name__)

DRIVER_RESOURCES = {"cpu": 0.1}  # the Tune trial only waits on its Train run and relays results
TRAIN_RUNS_DIR = "data_parallel"  # Train runs by trial key, beside Tune's experiments under <storage>/tune
SHARED_STATE = ("model", "optimizer")  # keys of a task's state_dict that are equal on every replica
BUCKET_BYTES = 32 << 20  # gradients travel in flat all-reduce buckets of at most this size
POLL_SECONDS = 0.5  # how often the driver looks whether its Train run has ended while no result comes
ABORT_SECONDS = 30.0  # a Train run not aborted gracefully by then is killed
RELEASE_AFTER_SECONDS = 10.0  # grace for a stopped trial's own abort before the sweep driver steps in
COMMIT_WAIT_SECONDS = 60.0  # Task.on_checkpoint (e.g. tests' fault injection): longest wait for Train to register


# ------------------------------------------------------------------------------------------------ workers
def _buckets(tensors: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Runs of same-dtype, same-device tensors of at most ``BUCKET_BYTES`` (a bigger tensor goes alone)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if bucket and (size + nbytes > BUCKET_BYTES or (t.dtype, t.device) != (bucket[0].dtype, bucket[0].device)):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += nbytes
    if bucket:
        yield bucket


class GradientAverager:
    """``Task.synced`` of one replica: averages the step's loss and every gradient over the replicas.

    A gradient missing on this replica (its share of the batch never reached the parameter) counts as zero when
    another replica has one, and stays None when none has, as in single-process training. ``calls`` lets the
    caller check that a task really syncs every step."""

    def __init__(self, model: torch.nn.Module, world_size: int) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.world_size = world_size
        self.calls = 0

    @torch.no_grad()
    def __call__(self, loss: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        present = torch.tensor([p.grad is not None for p in self.params], dtype=torch.float64, device=loss.device)
        head = torch.cat([loss.detach().reshape(1).to(torch.float64), present])
        dist.all_reduce(head)
        grads = []
        for p, anywhere in zip(self.params, head[1:].tolist(), strict=True):
            if anywhere:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                grads.append(p.grad)
        for bucket in _buckets(grads):
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for g in bucket:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        return (head[0] / self.world_size).to(loss.dtype)


def _fingerprint(model: torch.nn.Module) -> torch.Tensor:
    """Sum and sum of squares of all parameters in float64: equal on replicas whose weights are bitwise equal."""
    with torch.no_grad():
        params = list(model.parameters())
        total = torch.zeros(2, dtype=torch.float64, device=params[0].device)
        for p in params:
            q = p.detach().to(torch.float64)
            total[0] += q.sum()
            total[1] += q.square().sum()
    return total


class ReplicaIO:
    """``TrialIO`` of one data-parallel replica: Ray Train's checkpoints and reports, collectives for the rest."""

    def __init__(self, task: Task, sync: GradientAverager, device: torch.device) -> None:
        self.task, self.sync, self.device = task, sync, device
        self.rank, self.world_size = task.rank, task.world_size
        self.lead = self.rank == 0
        self.own_file = f"{Path(STATE_FILE).stem}.rank{self.rank}.pt"
        group = ray.util.get_current_placement_group()
        self.placement_group = group.id.hex() if group is not None else None

    def restore(self) -> dict[str, Any] | None:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            saved = torch.load(Path(d) / STATE_FILE, map_location=self.device, weights_only=False)
            own = Path(d) / self.own_file
            if self.rank and own.exists():  # this replica's readers and RNG streams over rank 0's
                saved["task"].update(torch.load(own, map_location=self.device, weights_only=False)["task"])
        return saved

    def train(self, task: Task, steps: int) -> TrainStats:
        before = self.sync.calls
        stats = task.train(steps)
        if self.sync.calls - before != stats.steps:
            raise RuntimeError(f"{type(task).__name__}.train does not pass each step's loss through Task.synced, so "
                               "its replicas would drift apart: this domain cannot run data-parallel trials "
                               "(resources.workers > 1)")
        samples = torch.tensor([stats.samples], dtype=torch.float64, device=self.device)
        dist.all_reduce(samples)
        return replace(stats, samples=float(samples))

    def step_flops(self, task: Task) -> float | None:
        """The replicas' shares summed: the global batch's figure (NaN when a replica has none)."""
        mine = getattr(task, "flops_per_step", None)
        total = torch.tensor([math.nan if mine is None else float(mine)], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total)

    def evaluate(self, task: Task) -> dict[str, float]:
        box = [task.evaluate() if self.lead else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def drift(self) -> float:
        """Largest spread of the parameter fingerprint over the replicas (0.0: all bitwise equal)."""
        mine = _fingerprint(self.task.model)
        extremes = torch.cat([mine, -mine])
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        return float((extremes[:2] + extremes[2:]).abs().max())

    def report(self, report: TrialReport, saved: dict[str, Any] | None) -> None:
        result = replace(report, replica_drift=self.drift(), train_placement_group=self.placement_group).to_result()
        if saved is None:
            ray.train.report(result)
            return
        if not self.lead:
            saved = {"task": {k: v for k, v in saved["task"].items() if k not in SHARED_STATE}}
        with tempfile.TemporaryDirectory() as tmp:  # Train merges every rank's files into one checkpoint
            torch.save(saved, Path(tmp) / (STATE_FILE if self.lead else self.own_file))
            ray.train.report(result, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def wait_committed(self, timeout: float = COMMIT_WAIT_SECONDS) -> None:
        """Wait until the Train controller has registered this replica's last checkpoint. A report returns once
        the checkpoint is uploaded, but the controller collects it only at its next poll of the workers (every
        2 s): a replica gone before that takes the report, and any the controller has not paired yet, with it."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return
        storage = ray.train.get_context().get_storage()
        name = Path(checkpoint.path).name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in registered_checkpoints(storage.storage_filesystem, storage.checkpoint_manager_snapshot_path):
                return
            time.sleep(0.2)
        log.warning("checkpoint %s not registered by Ray Train after %.0f s", name, timeout)


def _broadcast_from_lead(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every replica (equal seeds should give equal weights; now they do)."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t, src=0)


def replica_seed(seed: int, rank: int) -> int:
    """Torch seed of replica ``rank`` > 0: its own dropout masks, reproducible from the trial's seed."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def run_replica(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: build the task, join the replicas, run the shared training loop."""
    quiet_ray_logs()
    logging.getLogger().setLevel(logging.WARNING)  # Train logs a line per report under its file's path, at INFO
    plan = TrialPlan.of(loop_config)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    device = get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    task = build_trial_task(plan, loop_config["prepared_refs"], str(device))
    sync = GradientAverager(task.model, world_size)
    task.join_replicas(rank, world_size, sync)
    _broadcast_from_lead(task.model)
    if rank:  # a restored replica gets its own RNG streams back from its checkpoint file
        torch.manual_seed(replica_seed(plan.seed, rank))
    train_loop(plan, task, ReplicaIO(task, sync, device))


# ------------------------------------------------------------------------------------------------- driver
def worker_resources(plan: TrialPlan) -> dict[str, float]:
    """One worker's request: the spec's ``cpu`` and ``gpu``. Workers without GPUs that could never all start on
    this cluster (a laptop, where GPU requests were dropped: 4 workers x 1 CPU on 2 cores) share what it has."""
    cpu, gpu, workers = float(plan.resources["cpu"]), float(plan.resources.get("gpu", 0.0)), plan.workers
    if gpu:
        return {"CPU": cpu, "GPU": gpu}
    room = ray.cluster_resources().get("CPU", 0.0) - DRIVER_RESOURCES["cpu"]
    if 0 < room < cpu * workers:
        shared = math.floor(room / workers * 1e4) / 1e4  # Ray counts resources in units of 1e-4
        log.warning("%s: %d workers x %g CPU do not fit this cluster's %g CPUs; each gets %g",
                    plan.trial_key, workers, cpu, room, shared)
        cpu = shared
    return {"CPU": cpu}


class _Relay(ray.train.UserCallback):
    """Runs in the Train controller: hands rank 0's result of every report to the driver, with the controller's
    handle, through which the driver aborts the run when Tune stops the trial."""

    def __init__(self, inbox: Queue) -> None:
        self.inbox = inbox

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        self.inbox.put((ray.get_runtime_context().current_actor, metrics[0]))


class _TrainRun:
    """``trainer.fit()`` in a thread of its own, so the trial's thread is free to relay results to Tune."""

    def __init__(self, trainer: TorchTrainer) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._fit, args=(trainer,), name="train-run", daemon=True)
        self.thread.start()

    def _fit(self, trainer: TorchTrainer) -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the trial's thread
            self.error = exc

    def results(self, inbox: Queue) -> Iterator[tuple[ActorHandle, dict[str, Any]]]:
        """What the run reports, in order, until it has ended and all of it is read."""
        while self.thread.is_alive():
            with contextlib.suppress(Empty):
                yield inbox.get(timeout=POLL_SECONDS)
        while not inbox.empty():
            yield inbox.get_nowait()


def _abort(controller: ActorHandle) -> None:
    """End the Train run now, without holding up the trial's thread (Tune gives a stopped trial's thread 2 s
    before it refuses to reuse the actor). ``abort`` is what Ray's own driver calls on Ctrl-C: workers exit
    and their resources return; a run that does not go within ``ABORT_SECONDS`` is killed."""
    done = controller.abort.remote()

    def reap() -> None:
        if not ray.wait([done], timeout=ABORT_SECONDS)[0]:
            ray.kill(controller)

    threading.Thread(target=reap, name="train-abort", daemon=True).start()


def run_data_parallel(plan: TrialPlan, prepared_refs: Mapping[str, ray.ObjectRef]) -> None:
    """The trial's body when ``workers`` > 1: a Ray Train run of the trial, its results relayed to Tune."""
    quiet_ray_logs()
    storage = tune.get_context().get_storage()
    resources = worker_resources(plan)
    inbox = Queue(actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        run_replica,
        train_loop_config={PLAN_KEY: plan.to_config(), "prepared_refs": dict(prepared_refs)},
        scaling_config=ray.train.ScalingConfig(num_workers=plan.workers, use_gpu=resources.get("GPU", 0) > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=plan.trial_key, storage_path=f"{storage.storage_fs_path}/{TRAIN_RUNS_DIR}",
            storage_filesystem=storage.storage_filesystem, callbacks=[_Relay(inbox)],
            failure_config=ray.train.FailureConfig(max_failures=0),  # retries are the Tune trial's (max_failures)
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            logging_config=ray.train.LoggingConfig(log_level="WARNING")),
    )
    run = _TrainRun(trainer)
    controller: ActorHandle | None = None
    try:
        for handle, result in run.results(inbox):
            controller = handle
            tune.report(result)  # raises in this thread when Tune stops the trial
    except BaseException:
        if controller is not None:
            _abort(controller)
        raise
    finally:
        inbox.shutdown(force=True)
    if run.error is not None:
        raise run.error


def _release(group_hex: str) -> None:
    group = PlacementGroup(ray.PlacementGroupID.from_hex(group_hex))
    if placement_group_table(group).get("state") not in (None, "REMOVED"):
        log.warning("removing placement group %s left by a data-parallel trial's Train run", group_hex)
        remove_placement_group(group)


class ReleaseWorkers(tune.Callback):
    """Sweep driver: the workers of an ended data-parallel trial give their CPUs and GPUs back for sure.

    A stopped trial aborts its Train run itself. But when Tune ends the trial's actor right after stopping it (no
    trial is left to reuse it), the actor's exit takes the Train controller down with it before the abort has
    removed the workers' placement group; Ray Train's own cleaner for that case asks the dashboard's state API,
    which a local Ray started without a dashboard does not have, and the group would hold its resources for the
    rest of the sweep. So ``RELEASE_AFTER_SECONDS`` after a data-parallel trial ends or pauses (at the latest when
    the experiment ends), its group is removed if it is still there: a paused trial resumes on a new Train run."""

    def __init__(self) -> None:
        self._ended: dict[str, float] = {}  # placement group (hex) -> when its trial ended (monotonic)
        self._paused: set[str] = set()  # trial ids paused at the last step: each pause is noted once

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._note(trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._note(trial)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        # paused at a rung (synchronous halving): its actor is gone as well, its run with it
        paused = {t.trial_id: t for t in trials if t.status == "PAUSED"}
        for trial_id in paused.keys() - self._paused:
            self._note(paused[trial_id])
        self._paused = set(paused)
        now = time.monotonic()
        for group, ended in list(self._ended.items()):
            if now - ended >= RELEASE_AFTER_SECONDS:
                del self._ended[group]
                _release(group)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for group in self._ended:
            _release(group)
        self._ended.clear()

    def _note(self, trial: Any) -> None:
        report = TrialReport.from_result(trial.last_result)
        group = report.train_placement_group if report else None
        if group:
            self._ended.setdefault(group, time.monotonic())
