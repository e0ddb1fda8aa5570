"""``scaling-sweep``: plan, run, quickstart, fit and compare learning-curve sweeps."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from domains.base import DataSourceError
from domains.registry import installed_domains
from orchestrator.errors import RunRefused, SweepStopped
from orchestrator.presets import preset_path
from orchestrator.spec import SpecError, SweepSpec, load_spec

QUICKSTART_SPEC = preset_path("quickstart")  # packaged (orchestrator/sweeps/), so any install can run it


def _select_domains(spec: SweepSpec, names: str | None) -> SweepSpec:
    if not names:
        return spec
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in spec.domains]
    if unknown:
        raise SpecError(f"--domains: {', '.join(unknown)} not in the spec; allowed: {', '.join(spec.domains)}")
    return spec.model_copy(update={"domains": {n: spec.domains[n] for n in wanted}})


def cmd_plan(args: argparse.Namespace) -> int:
    from orchestrator.plan import format_plan, plan_trials, resolve_domains

    spec = _select_domains(load_spec(args.spec), args.domains)
    domains = resolve_domains(spec)
    trials = plan_trials(spec, domains)
    if spec.strategy.kind == "adaptive":
        print(spec.strategy.describe(len(trials)))
    print(format_plan(trials, domains))
    return 0


def _run(spec: SweepSpec, args: argparse.Namespace) -> int:
    from orchestrator.lease import StorageLease
    from orchestrator.ray_address import choose_target, probe

    # refused in seconds, before Ray and torch are loaded: a dead cluster address, a storage in use
    probe(choose_target(args.address))
    StorageLease(spec.storage_uri(), spec.name).refuse_if_held(args.takeover)
    from orchestrator.runner import run_sweep

    outcome = run_sweep(spec, progress=not args.quiet, num_cpus=args.num_cpus, address=args.address,
                        takeover=args.takeover, allow_spec_change=args.allow_spec_change)
    print(f"\nsweep {spec.name!r}: {outcome.ran} trials run, {outcome.skipped} already stored "
          f"-> {outcome.storage}/results\n")
    return _print_fits(outcome.storage, as_json=False, n_boot=args.bootstrap)


def cmd_run(args: argparse.Namespace) -> int:
    spec = _select_domains(load_spec(args.spec), args.domains)
    if args.storage:
        spec = spec.model_copy(update={"storage": args.storage})
    return _run(spec, args)


def cmd_quickstart(args: argparse.Namespace) -> int:
    spec = _select_domains(load_spec(QUICKSTART_SPEC), args.domains)
    spec = spec.model_copy(update={"storage": args.storage})
    return _run(spec, args)


def cmd_resume(args: argparse.Namespace) -> int:
    from orchestrator.runner import load_saved_spec

    return _run(_select_domains(load_saved_spec(args.storage, args.name), args.domains), args)


def _print_fits(storage: str, as_json: bool, n_boot: int, domain: str | None = None,
                metric: str | None = None, form: str = "auto") -> int:
    import pyarrow.compute as pc

    from fitting.curves import fit_store
    from fitting.report import format_table, to_json
    from fitting.store import ResultsStore

    warnings: list[str] = []
    table = ResultsStore(storage).read_results(warnings)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if domain is not None:
        table = table.filter(pc.equal(table["domain"], domain))
    if table.num_rows == 0:
        print(f"no trials stored under {storage}/results" + (f" for domain {domain!r}" if domain else ""),
              file=sys.stderr)
        return 1
    fits = fit_store(table, metric=metric, form=form, n_boot=n_boot, history=ResultsStore(storage).read_history)
    if as_json:
        print(json.dumps(to_json(fits), indent=2))
        return 0
    from fitting.compare import summary_lines

    # the joint surface and, for two-family domains, the comparison: a few seconds, from the same rows
    extra = summary_lines(table) if metric is None else []  # the surface fits each family's primary metric
    print("\n".join([format_table(fits), *(["", *extra] if extra else [])]))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    return _print_fits(args.storage, args.json, args.bootstrap, args.domain, args.metric, args.form)


def cmd_compare(args: argparse.Namespace) -> int:
    from fitting.compare import CompareError, compare_store

    try:
        result = compare_store(args.storage, args.families, storage2=args.storage2, domain=args.domain,
                               metric=args.metric)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.format_text())
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    for name, ep in sorted(installed_domains().items()):
        print(f"{name:<10} {ep.value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scaling-sweep", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def run_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--domains", help="comma-separated subset of the spec's domains")
        sp.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
        sp.add_argument("--quiet", action="store_true", help="no progress display")
        sp.add_argument("--bootstrap", type=int, default=500, help="bootstrap replicates for the final fits")
        sp.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray of its own)")
        sp.add_argument("--takeover", action="store_true",
                        help="take the storage's lease from a driver that holds it (only when that driver is gone)")
        sp.add_argument("--allow-spec-change", action="store_true",
                        help="run an edited spec whose changes are incompatible with the trials already stored")

    sp = sub.add_parser("plan", help="print the trial table of a spec without starting Ray")
    sp.add_argument("spec", type=Path)
    sp.add_argument("--domains", help="comma-separated subset of the spec's domains")
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("run", help="run (or resume) a sweep, then print the fitted learning curves")
    sp.add_argument("spec", type=Path)
    sp.add_argument("--storage", help="override the spec's storage (path or pyarrow URI)")
    run_options(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("resume", help="finish an interrupted sweep from its storage alone (restores Tune and ASHA)")
    sp.add_argument("storage", help="the sweep's storage (path or pyarrow URI)")
    sp.add_argument("--name", help="which sweep, when several share the storage")
    run_options(sp)
    sp.set_defaults(func=cmd_resume)

    sp = sub.add_parser("quickstart", help="run the bundled CPU sweep on small real data")
    sp.add_argument("--storage", default="./runs/quickstart", help="where results go (default ./runs/quickstart)")
    run_options(sp)
    sp.set_defaults(func=cmd_quickstart)

    sp = sub.add_parser("fit", help="fit power laws to the trials stored under STORAGE")
    sp.add_argument("storage", help="the sweep's storage (path or pyarrow URI)")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--domain", help="only this domain")
    sp.add_argument("--metric", help="fit this metric instead of each family's primary one")
    sp.add_argument("--form", choices=("auto", "power", "floor"), default="auto",
                    help="learning-curve form: pure power law, with floor, or chosen by the data")
    sp.add_argument("--bootstrap", type=int, default=500, help="bootstrap replicates for the intervals")
    sp.set_defaults(func=cmd_fit)

    sp = sub.add_parser("compare", help="compare two model families' learning-curve exponents (Δβ_g, a test of "
                                        "equal exponents, the offset as a data multiplier)")
    sp.add_argument("storage", help="the sweep's storage (path or pyarrow URI)")
    sp.add_argument("--families", required=True, help="two families as a,b (b is compared against a)")
    sp.add_argument("--storage2", help="take family b from this storage (e.g. a second sweep)")
    sp.add_argument("--domain", help="the domain (needed when both families are in several)")
    sp.add_argument("--metric", help="compare this metric instead of the primary one")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=cmd_compare)

    from fitting.service.server import add_arguments, serve_from_args

    sp = sub.add_parser("serve", help="serve live fits of a results store over HTTP (GET /curves/<domain>)")
    add_arguments(sp)
    sp.set_defaults(func=serve_from_args)

    sp = sub.add_parser("domains", help="list installed domain plugins")
    sp.set_defaults(func=cmd_domains)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SpecError, DataSourceError, RunRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SweepStopped as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
