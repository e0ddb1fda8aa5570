"""Domains are found through the ``scaling_sweep.domains`` entry-point group, so other packages can add some."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from domains.base import Domain
from domains.registry import UnknownDomainError, get_domain, installed_domains


def test_lm_is_installed_through_its_entry_point() -> None:
    assert installed_domains()["lm"].value == "domains.lm:LMDomain"
    lm = get_domain("lm")
    assert isinstance(lm, Domain) and set(lm.families) == {"word", "char", "word_rhn", "char_rhn"}


def test_unknown_domain_lists_the_installed_ones() -> None:
    with pytest.raises(UnknownDomainError) as err:
        get_domain("astronomy")
    assert str(err.value).startswith("unknown domain 'astronomy'; installed domains: ") and "lm" in str(err.value)


def test_a_package_outside_this_repo_can_add_a_domain(tmp_path: Path) -> None:
    """A third-party distribution (its own module + dist-info with an entry point) on sys.path registers a
    domain that the sweep planner then accepts, with no change to this repository."""
    (tmp_path / "lowercase_lm.py").write_text(textwrap.dedent('''
        from domains.lm import LMDomain

        class LowercaseLM(LMDomain):
            """The LM domain with case folded away: a plugin another team might ship."""
            name = "lm-lower"

            def prepare(self, source, cache_dir):
                return super().prepare(source.model_copy(update={"lowercase": True}), cache_dir)
    '''))
    dist = tmp_path / "lowercase_lm-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lowercase-lm\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[scaling_sweep.domains]\nlm-lower = lowercase_lm:LowercaseLM\n")
    probe = textwrap.dedent('''
        from domains.registry import get_domain, installed_domains
        from orchestrator.plan import plan_trials, resolve_domains
        from orchestrator.spec import parse_spec
        print(sorted(installed_domains()))
        d = get_domain("lm-lower")
        print(type(d).__name__, d.name)
        spec = parse_spec({"name": "x", "storage": "/tmp/x", "domains": {"lm-lower": {
            "data": {"train": "t.txt"}, "families": ["word"], "shards": [0.5, 1.0], "widths": [8]}}})
        print(len(plan_trials(spec, resolve_domains(spec))))
    ''')
    out = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin"},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert "'lm-lower'" in out[0] and "'lm'" in out[0]
    assert out[1] == "LowercaseLM lm-lower"
    assert out[2] == "2"
