"""``isar-ros``: one command for the product's jobs.

    isar-ros generate  --out DIR [--tasks N --seed S ...]   synthetic ISAR-format dataset
    isar-ros benchmark --data DIR --method NAME --out DIR    score a method the way ISAR does
    isar-ros demo                                            the README's main job
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from isar_ros.paths import SOURCE_ROOT

DEMO_DATA = SOURCE_ROOT / "data" / "isar_demo"
DEMO_OUT = SOURCE_ROOT / "out" / "demo"


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option expects key=value, got {pair!r}")
        options[key] = value
    return options


def add_generate(sub) -> None:
    from sim_bridge.generator import GeneratorConfig

    parser = sub.add_parser("generate", help="generate a synthetic dataset in the ISAR layout")
    parser.add_argument("--out", required=True, type=Path)
    for f in fields(GeneratorConfig):
        kind = type(f.default)
        if kind is bool:
            parser.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    parser.add_argument("--quiet", action="store_true")


def cmd_generate(args) -> int:
    from sim_bridge.generator import GeneratorConfig, generate

    config = GeneratorConfig(**{f.name: getattr(args, f.name) for f in fields(GeneratorConfig)})
    summary = generate(config, args.out, progress=not args.quiet)
    print(f"generated {summary['tasks']} tasks, {summary['scenes']} scenes, {summary['frames']} frames "
          f"in {summary['seconds']:.1f} s -> {args.out}")
    return 0


def add_benchmark(sub) -> None:
    parser = sub.add_parser("benchmark", help="score a method on an ISAR-format dataset")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (holds the task folders)")
    parser.add_argument("--method", default="isar_ros", help="oracle, empty, isar_ros, isar_baseline")
    parser.add_argument("--mode", default="both", choices=["single_shot", "multi_shot", "both"])
    parser.add_argument("--task", action="append", help="only these tasks (repeatable)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="method option (repeatable)")
    parser.add_argument("--save-predictions", action="store_true", help="write official colour PNGs under OUT/predictions")
    parser.add_argument("--quiet", action="store_true")


def cmd_benchmark(args) -> int:
    from isar_ros.isar import methods
    from isar_ros.isar.dataset import MODES, IsarDataset
    from isar_ros.isar.report import markdown_summary, write_reports
    from isar_ros.isar.runner import run_benchmark

    dataset = IsarDataset(args.data)
    method = methods.create(args.method, _parse_options(args.option))
    modes = MODES if args.mode == "both" else (args.mode,)
    result = run_benchmark(dataset, method, modes, args.task, args.out / "predictions" if args.save_predictions else None,
                           progress=not args.quiet)
    paths = write_reports(result, args.out)
    print(markdown_summary(result))
    print(f"reports: {', '.join(str(p) for p in paths.values())}")
    return 0


def add_demo(sub) -> None:
    parser = sub.add_parser("demo", help="the main job: generate the demo dataset if missing, teach, find, score")
    parser.add_argument("--data", type=Path, default=DEMO_DATA)
    parser.add_argument("--out", type=Path, default=DEMO_OUT)


def cmd_demo(args) -> int:
    from sim_bridge.generator import GeneratorConfig, generate

    if not (args.data / ".complete").is_file():
        print(f"generating the synthetic demo dataset into {args.data} (once)")
        generate(GeneratorConfig(), args.data)
        (args.data / ".complete").write_text("demo configuration, seed 0\n")
    bench = argparse.Namespace(data=args.data, method="isar_ros", mode="both", task=None, out=args.out, option=[],
                               save_predictions=False, quiet=False)
    return cmd_benchmark(bench)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="isar-ros", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate(sub)
    add_benchmark(sub)
    add_demo(sub)
    args = parser.parse_args(argv)
    handlers = {"generate": cmd_generate, "benchmark": cmd_benchmark, "demo": cmd_demo}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, KeyError, ValueError) as error:
        print(f"isar-ros {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
