"""The trial loop's ``converged`` rule (issue 13): still improving at the step cap, stopped by patience, plateaued,
or not judged."""

from __future__ import annotations

import math

from orchestrator.trial_loop import trial_converged

STEPS = [50, 100, 150, 200, 250, 300, 350, 400]


def test_patience_is_converged_and_diverged_or_unjudged_is_none() -> None:
    assert trial_converged("patience", STEPS[:3], [3.0, 2.9, 2.95]) is True
    assert trial_converged("diverged", STEPS[:2], [3.0, math.nan]) is None
    assert trial_converged("max_steps", [50], [3.0]) is None  # one evaluation: nothing to judge
    assert trial_converged("max_steps", [50, 100], [math.nan, math.nan]) is None


def test_still_improving_over_the_last_quarter_of_steps_is_not_converged() -> None:
    # the last quarter of 50..400 starts at step 312.5: judged from the best up to step 300 (2.0) to the end
    falling = [4.0, 3.0, 2.5, 2.2, 2.1, 2.0, 1.99, 1.95]
    assert trial_converged("max_steps", STEPS, falling) is False  # 2.5% better than 2.0
    flat = [4.0, 3.0, 2.5, 2.2, 2.1, 2.0, 1.995, 1.99]
    assert trial_converged("max_steps", STEPS, flat) is True  # 0.5%: under the 1% default
    assert trial_converged("max_steps", STEPS, flat, min_delta=0.001) is False  # patience's own min_delta
    assert trial_converged("max_steps", STEPS, falling, min_delta=0.05) is True
    # the best-so-far is what counts: a spike after the best, then a recovery, is not an improvement
    assert trial_converged("max_steps", STEPS, [4.0, 3.0, 2.5, 2.2, 2.1, 2.0, 2.6, 2.01]) is True


def test_two_evaluations_compare_the_first_with_the_last() -> None:
    assert trial_converged("max_steps", [50, 100], [3.0, 2.5]) is False
    assert trial_converged("max_steps", [50, 100], [3.0, 3.0]) is True
    assert trial_converged("max_steps", [50, 100], [math.nan, 2.5]) is False  # first finite value at the end
