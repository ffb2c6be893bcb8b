"""How much do the numbers move with the memory's random draws? The same data sets, several seeds.

    .venv/bin/python scripts/seed_spread.py --seeds 0 1 2 --option track=true --option track=false \
        data/eval/synthetic-moving-s0 data/eval/synthetic-default-s0 ...

The memory subsamples the positives and negatives of every fit with a seed (``MemoryConfig.seed`` mixed
with a hash of the taught mask). For each seed and each ``--option`` setting (one setting per
flag, ``key=value``; none: the defaults) this runs the ``isar_ros`` method on every data set and prints
the NaN-skipping mIoU per data set and its mean, single- and multi-shot. A development tool (printed
numbers, no files): a difference between two settings is worth reporting when it holds for every seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isar_ros.isar.core_methods import IsarRosMethod  # noqa: E402
from isar_ros.isar.dataset import MODES, IsarDataset  # noqa: E402
from isar_ros.isar.runner import run_benchmark  # noqa: E402


def run(paths: list[str], seed: int, options: dict[str, str]) -> dict[str, dict[str, float]]:
    scores = {}
    for path in paths:
        method = IsarRosMethod(options)
        method.perception.config.memory.seed = seed  # train() starts each task from a cleared memory
        result = run_benchmark(IsarDataset(path), method, progress=False)
        scores[Path(path).name] = {m: result.mode_summary(m)["mIoU_nan_skipping"] for m in MODES}
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="+", help="ISAR-layout data set folders")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--option", action="append", default=[], help="one setting: key=value[,key=value]")
    args = parser.parse_args()
    settings = [dict(p.split("=", 1) for p in o.split(",")) for o in args.option] or [{}]
    for seed in args.seeds:
        for options in settings:
            scores = run(args.data, seed, options)
            label = ",".join(f"{k}={v}" for k, v in options.items()) or "defaults"
            for name, values in scores.items():
                print(f"seed {seed} {label:24s} {name:28s} " + " / ".join(f"{values[m]:.3f}" for m in MODES))
            means = " / ".join(f"{np.nanmean([v[m] for v in scores.values()]):.3f}" for m in MODES)
            print(f"seed {seed} {label:24s} {'mean (single / multi)':28s} {means}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
