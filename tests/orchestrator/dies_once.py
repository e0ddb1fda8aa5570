"""Fault injection for the retry tests, in test code: the word LM, except that a trial armed with a marker file
dies once, hard (``os._exit``, as a lost node or an OOM kill would end it), right after its 2nd checkpoint.

It uses the framework's ``Task.on_checkpoint`` hook: the process waits until that checkpoint is committed
(``wait_committed``), so a test knows which checkpoint the retry resumes from; a real crash may come a moment
earlier and lose one report. The first trial to reach its 2nd checkpoint takes the marker (renamed to
``.failed``); a retry, or any other trial, finds it gone and trains on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from domains.base import FamilyInfo
from domains.lm import LMDomain
from domains.lm.task import LMHParams, LMTask

NAME = "lm-dies-once"
DIE_AT_ITERATION = 2


@dataclass(frozen=True)
class DiesOnceHParams(LMHParams, what="LM word (dies once)"):
    fail_marker: str = ""  # a file whose presence arms the kill; "" never dies


class DiesOnceTask(LMTask):
    def on_checkpoint(self, iteration: int, wait_committed: Callable[[], None]) -> None:
        if iteration != DIE_AT_ITERATION or not self.hp.fail_marker:
            return
        armed = Path(self.hp.fail_marker)
        try:
            armed.rename(armed.with_suffix(".failed"))
        except FileNotFoundError:  # already taken: by an earlier attempt of this trial, or by another trial
            return
        wait_committed()
        os._exit(1)


class DiesOnceLM(LMDomain, name=NAME):
    families: ClassVar[Mapping[str, FamilyInfo]] = {"word": LMDomain.families["word"]}
    hparams: ClassVar[Mapping[str, type[LMHParams]]] = {"word": DiesOnceHParams}
    task_class: ClassVar[type[LMTask]] = DiesOnceTask
