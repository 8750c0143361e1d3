"""``python experiments/run.py CONFIG [key.sub=value ...] [--stages data,train,sample,evaluate]``.

CONFIG is a YAML file or an existing run directory (its saved ``config.yaml`` is used, so a run can
be resumed or evaluated again from it).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .config import STAGES, ConfigError, dump_config, load_config


def parse_args(argv):
    p = argparse.ArgumentParser(prog="experiments/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="experiment YAML, or a run directory holding config.yaml")
    p.add_argument("--sweep", metavar="SPEC", help="run a Ray Tune sweep or study (a spec under tuning/ or "
                   "experiments/studies/); overrides then apply to its base config, sweep.<field>=... to the spec")
    p.add_argument("--only", action="append", default=[], metavar="GROUP=NAME[,NAME]",
                   help="with --sweep: run only these variants of a study (repeatable); the part runs as "
                        "<study>-<names> and benchmarks/publish_study.py merges the parts")
    p.add_argument("--restart", action="store_true", help="with --sweep: start over a study whose spec or base "
                   "config changed since its trials started (the old Tune state is moved aside, nothing is deleted)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.epochs=10 ray.num_workers=2")
    p.add_argument("--stages", default=",".join(STAGES),
                   help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    p.add_argument("--print-config", action="store_true", help="validate, print the resolved config and exit "
                   "(with --sweep: validate every trial's config and list the trials; nothing starts)")
    return p.parse_intermixed_args(argv)  # options may come before, between or after the overrides


def main(argv=None) -> int:
    from .runtime import log, package_dir

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.sweep:
        return _sweep(args)
    if args.only or args.restart:
        print(f"error: {'--only' if args.only else '--restart'} applies to a study; use it with --sweep", file=sys.stderr)
        return 2
    if args.config is None:
        print("error: give a CONFIG (or --sweep SPEC)", file=sys.stderr)
        return 2
    path = Path(args.config)
    if path.is_dir():
        path = path / "config.yaml"
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    try:
        if unknown:
            raise ConfigError(f"--stages: unknown stage(s) {unknown}; allowed: {', '.join(STAGES)}")
        cfg = load_config(path, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    import moldiff
    from .experiment import run_experiment

    log(f"moldiff {moldiff.__version__} from {package_dir()}")
    command = "python experiments/run.py " + " ".join(shlex.quote(a) for a in argv)
    from .train.checkpoint import CheckpointError
    try:
        run_experiment(cfg, stages, command=command, log=log)
    except (ConfigError, CheckpointError) as err:   # found once Ray is up, or in the runs a config names
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _sweep(args) -> int:
    from .runtime import log
    from .sweep import load_spec, run_sweep, split_overrides

    overrides = ([args.config] if args.config else []) + list(args.overrides)   # argparse puts the first one in config
    try:
        load_spec(args.sweep, split_overrides(overrides)[0], args.only)
        if args.print_config:              # a dry run: every trial's config validated, nothing started
            from .sweep import describe_sweep
            print(describe_sweep(args.sweep, overrides, args.only), end="")
            return 0
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        run_sweep(args.sweep, overrides, log=log, only=args.only, restart=args.restart)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
