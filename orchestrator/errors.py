"""Why a sweep did not start or did not finish, as exceptions the CLI turns into one clear line.

Kept free of Ray and pyarrow imports: ``scaling-sweep --help`` and ``serve`` import the CLI, not the runner.
"""

from __future__ import annotations


class RunRefused(RuntimeError):
    """The sweep was refused before any trial started; nothing needs resuming."""


class LeaseHeld(RunRefused):
    """Another driver holds the storage; the message names it and how to take over."""


class RayAddressError(RunRefused, ConnectionError):
    """A given Ray address does not answer; the message names it and where it came from."""


class SweepStopped(OSError):
    """The sweep stopped midway with every stored row whole: its storage could not be written (no space, no
    permission, object store errors) or another driver took it over. Resume once that is fixed."""
