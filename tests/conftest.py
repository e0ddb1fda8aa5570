"""Shared fixtures: real offline English text and one real local Ray instance for the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from domains.registry import register_domain

# Domains written for the tests, registered before any Ray starts, so that its workers find them as well.
register_domain("digits-mlp", "tests.domains.digits_mlp:DigitsMLPDomain")  # the framework's fifth domain
register_domain("lm-dies-once", "tests.orchestrator.dies_once:DiesOnceLM")  # fault injection for retry tests


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Billion-Word-layout corpus of real English sentences (gettext catalogs + Python docs)."""
    from domains.lm.offline_corpus import write_corpus

    return write_corpus(tmp_path_factory.mktemp("corpus"), max_sentences=6000, valid_sentences=600)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A real local Ray with 2 CPUs, started once (start-up costs seconds)."""
    import ray

    from orchestrator.runner import init_ray

    init_ray(num_cpus=2)
    yield
    ray.shutdown()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures tests measured (``record_property``) at the end of the run, so every CI log carries them:
    tests assert correctness, not speed, but some figures are worth seeing on every run."""
    figures = [(report.nodeid.rsplit("::", 1)[-1], name, value)
               for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed")
               if report.when == "call" for name, value in report.user_properties]
    if figures:
        terminalreporter.section("figures measured by tests")
        for test, name, value in figures:
            terminalreporter.write_line(f"{name} = {value}   ({test})")
