"""When async ASHA will promote too many: a group with more trials than can train at once.

Async ASHA judges each arrival at a rung on the few that arrived before it, and the first arrival always passes.
With every configuration of a group training at once they reach a rung together and async ASHA halves much as
synchronous halving does; with fewer places than trials they arrive a few at a time, and on
``benchmarks/asha_efficiency.py`` async ASHA spent 31% of the no-stopping compute where synchronous halving spent
24%, with the same best configurations. The sweep says so before it starts, naming the setting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.contract import TrialPlan
from orchestrator.plan import group_key


def configurations_per_group(trials: Iterable[TrialPlan], group_by: tuple[str, ...]) -> dict[Any, int]:
    """Configurations (not seeds: a configuration's seeds are judged together) planned in each ASHA group."""
    configs: dict[Any, set[str]] = {}
    for t in trials:
        configs.setdefault(group_key(t, group_by), set()).add(t.config_key)
    return {key: len(keys) for key, keys in configs.items()}


def places_for(trial: TrialPlan, cluster: Mapping[str, float], max_concurrent: int | None = None) -> int:
    """How many trials like ``trial`` the cluster (Ray's resource totals: ``CPU``, ``GPU``) can train at once, all
    of its workers counted; at most ``max_concurrent``. Node boundaries are ignored: an upper bound."""
    request = {"CPU": trial.resources.get("cpu", 0.0) * trial.workers,
               "GPU": (trial.resources.get("gpu") or 0.0) * trial.workers}
    fits = [math.floor(cluster.get(kind, 0.0) / need + 1e-9) for kind, need in request.items() if need > 0]
    places = min(fits) if fits else math.inf
    if max_concurrent is not None:
        places = min(places, max_concurrent)
    return int(min(places, 1 << 30))


def async_halving_warning(trials: list[TrialPlan], group_by: tuple[str, ...], cluster: Mapping[str, float],
                          max_concurrent: int | None) -> str | None:
    """The warning for a grid sweep under async ASHA whose largest group has more trials (configurations x seeds:
    a configuration is judged once its seeds are in) than the places it has; None when every group fits (or
    nothing is planned)."""
    groups: dict[Any, list[TrialPlan]] = {}
    for t in trials:
        groups.setdefault(group_key(t, group_by), []).append(t)
    if not groups:
        return None
    largest = max(groups, key=lambda key: len(groups[key]))
    places = places_for(groups[largest][0], cluster, max_concurrent)
    if places == 0 or len(groups[largest]) <= places:  # 0: not started yet; an autoscaler adds the nodes it asks for
        return None
    crowded = sum(1 for members in groups.values() if len(members) > places)
    return (f"{crowded} of {len(groups)} ASHA groups have more trials (up to {len(groups[largest])}, in group "
            f"{'/'.join(map(str, largest))}) than the {places} that can train at once on this cluster now: async "
            f"ASHA will pass too many at each rung. Set early_stopping.synchronous: true to halve each group whole "
            f"(benchmarks/asha_efficiency.py: 24% of the no-stopping compute against 31%, same best "
            f"configurations)")
