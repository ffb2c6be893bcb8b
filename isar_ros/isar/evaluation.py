"""An evaluation suite: one method configuration over many data sets, one report (``isar-ros evaluate``).

A suite file (YAML, see ``config/eval/dev.yaml``) names the method and its options, where generated and
imported data are cached, and the data sets, each tagged ``dev`` or ``test``::

    name: dev
    method: isar_ros
    options: {}                        # as isar-ros benchmark --option key=value
    cache: data/eval                   # generated / imported data sets (relative: to the checkout)
    generator: {tasks: 2, frames: 40, width: 424, height: 240}   # shared by every synthetic set
    datasets:
      - {group: synthetic-default, split: dev, seeds: [0, 1, 2, 3, 4], generate: {}}
      - {group: synthetic-moving, split: dev, seeds: [0, 1, 2, 3, 4], generate: {moving_objects: true}}
      - {group: davis2016, split: dev, import: {kind: davis, source: ../shared/data/real/davis2016}}

A group with ``seeds`` expands into one data set per seed (``<group>-s<seed>``); its spread over seeds
(mean, min, std) is reported. Data sets are generated or imported once into the cache (a marker file
records the recipe; another recipe makes it anew); a real source that is absent is skipped with a
message. Each data set's scores are written as soon as they exist, so an interrupted run resumes where
it stopped. The report (``report.json``, ``report.md``, ``report.png``) has, per data set and pooled
over data sets, for single- and multi-shot: the official and the NaN-skipping mIoU, mBoundF, the
misclassification rate, both false-detection ratios (NaN-skipping means over scenes: a scene where the
condition never occurs does not count) and frames/s.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from isar_ros.errors import ConfigurationError
from isar_ros.isar.dataset import MODES, IsarDataset
from isar_ros.isar.metric import nanmean
from isar_ros.isar.runner import BenchmarkResult, run_benchmark
from isar_ros.paths import workspace_dir

METRICS = (
    ("mIoU", "mIoU"),
    ("mIoU_nan_skipping", "mIoU (NaN-skip.)"),
    ("mBoundF_nan_skipping", "mBoundF"),
    ("misclassification_rate", "misclass."),
    ("false_detection_visible", "false det. visible"),
    ("false_detection_not_visible", "false det. not visible"),
    ("fps", "frames/s"),
)
SPLITS = ("dev", "test")


@dataclass
class DatasetSpec:
    name: str
    group: str
    split: str
    recipe: dict[str, Any]  # {"generate": {...GeneratorConfig}} or {"import": {kind, source, options}}

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.recipe, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Suite:
    name: str
    method: str
    options: dict[str, str]
    cache: Path
    datasets: list[DatasetSpec]
    modes: tuple[str, ...] = MODES
    path: Path | None = None
    skipped: list[str] = field(default_factory=list)


def _resolve(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else workspace_dir() / path


Generator = Callable[[dict[str, Any], Path], None]  # synthetic settings, folder -> writes a data set there


def load_suite(path: Path, generator_settings: set[str]) -> Suite:
    """Read and check a suite file (``generator_settings``: the known synthetic settings);
    :class:`ConfigurationError` naming the entry that is wrong."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(f"{path}: unreadable suite file ({error})") from error
    if not isinstance(raw, dict) or not isinstance(raw.get("datasets"), list):
        raise ConfigurationError(f"{path}: a suite needs name, method and a list of datasets")
    shared = dict(raw.get("generator") or {})
    known = generator_settings
    specs = []
    for k, entry in enumerate(raw["datasets"]):
        where = f"{path}: datasets[{k}]"
        if (
            not isinstance(entry, dict)
            or "group" not in entry
            or ("generate" in entry) == ("import" in entry)
        ):
            raise ConfigurationError(f"{where}: needs a group and exactly one of generate / import")
        split = entry.get("split", raw.get("split", "dev"))
        if split not in SPLITS:
            raise ConfigurationError(f"{where}: split must be dev or test, not {split!r}")
        if "generate" in entry:
            settings = {**shared, **(entry["generate"] or {})}
            unknown = set(settings) - known
            if unknown:
                raise ConfigurationError(
                    f"{where}: unknown generator settings {sorted(unknown)}; known: {sorted(known)}"
                )
            for seed in entry.get("seeds", [settings.get("seed", 0)]):
                name = f"{entry['group']}-s{seed}" if "seeds" in entry else entry["group"]
                specs.append(
                    DatasetSpec(name, entry["group"], split, {"generate": {**settings, "seed": int(seed)}})
                )
        else:
            recipe = dict(entry["import"])
            if recipe.get("kind") not in ("davis", "perseg", "bop", "generic") or "source" not in recipe:
                raise ConfigurationError(
                    f"{where}: import needs kind (davis, perseg, bop, generic) and source"
                )
            specs.append(DatasetSpec(entry["group"], entry["group"], split, {"import": recipe}))
    names = [s.name for s in specs]
    if len(names) != len(set(names)):
        raise ConfigurationError(
            f"{path}: data set names repeat: {sorted(n for n in names if names.count(n) > 1)}"
        )
    return Suite(
        str(raw.get("name", Path(path).stem)),
        str(raw.get("method", "isar_ros")),
        {str(k): str(v) for k, v in (raw.get("options") or {}).items()},
        _resolve(str(raw.get("cache", "data/eval"))),
        specs,
        tuple(raw.get("modes", MODES)),
        Path(path),
    )


def prepare(spec: DatasetSpec, cache: Path, generate: Generator) -> Path | None:
    """The data set's folder, generated or imported once; None (and a message) when its source is absent."""
    folder = cache / spec.name
    marker = folder / ".recipe.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec.recipe:
        return folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    if "generate" in spec.recipe:
        generate(spec.recipe["generate"], folder)
    else:
        from isar_ros.isar import importers

        recipe = spec.recipe["import"]
        source = _resolve(recipe["source"])
        if not source.exists():
            print(f"skipping {spec.name}: {source} is not here (real data is read from there, never copied)")
            return None
        options = importers.ImportOptions(**(recipe.get("options") or {}))
        if recipe["kind"] == "davis":
            importers.import_videos(importers.davis_videos(source, recipe.get("sequences")), folder, options)
        elif recipe["kind"] == "generic":
            importers.import_videos(importers.generic_videos(source), folder, options)
        elif recipe["kind"] == "perseg":
            importers.import_perseg(source, folder, options)
        else:
            importers.import_bop(source, folder, options, recipe.get("train_scenes"))
    marker.write_text(json.dumps(spec.recipe, sort_keys=True))
    return folder


def dataset_scores(result: BenchmarkResult) -> dict[str, dict[str, float]]:
    """Per mode: the metrics of one data set (official mIoU NaN-propagating; every other one NaN-skipping)."""
    scores = {}
    for mode, records in result.modes.items():
        summaries = [r.score.summary() for r in records]
        row = {key: nanmean([s[key] for s in summaries]) for key, _ in METRICS if key not in ("mIoU", "fps")}
        row["mIoU"] = float(np.mean([s["mIoU"] for s in summaries])) if summaries else math.nan
        frames = sum(r.score.frames for r in records)
        seconds = sum(r.score.seconds for r in records)
        row["fps"] = frames / seconds if seconds > 0 else math.nan
        row["scenes"] = len(records)
        scores[mode] = row
    return scores


def _spread(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return {"mean": math.nan, "min": math.nan, "std": math.nan}
    return {"mean": float(np.mean(finite)), "min": float(np.min(finite)), "std": float(np.std(finite))}


def summarise(suite: Suite, per_dataset: dict[str, dict]) -> dict[str, Any]:
    """Groups (spread over seeds) and the pooled mean over data sets, per split and mode."""
    groups: dict[str, dict] = {}
    pooled: dict[str, dict] = {}
    for spec in suite.datasets:
        if spec.name in per_dataset:
            groups.setdefault(spec.group, {"split": spec.split, "datasets": []})["datasets"].append(spec.name)
    for entry in groups.values():
        entry["modes"] = {
            mode: {
                key: _spread([per_dataset[n]["scores"][mode][key] for n in entry["datasets"]])
                for key, _ in METRICS
            }
            for mode in suite.modes
        }
    for split in SPLITS:
        names = [s.name for s in suite.datasets if s.split == split and s.name in per_dataset]
        if names:
            pooled[split] = {
                mode: {
                    key: _spread([per_dataset[n]["scores"][mode][key] for n in names]) for key, _ in METRICS
                }
                for mode in suite.modes
            }
            pooled[split]["datasets"] = len(names)
            pooled[split]["multi_better"] = (
                sum(
                    per_dataset[n]["scores"]["multi_shot"]["mIoU_nan_skipping"]
                    > per_dataset[n]["scores"]["single_shot"]["mIoU_nan_skipping"]
                    for n in names
                )
                if set(MODES) <= set(suite.modes)
                else None
            )
    return {"groups": groups, "pooled": pooled}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, timeout=10, cwd=workspace_dir()
    ).stdout.strip()


def commit() -> str:
    """The checkout's commit, with ``+changes`` when tracked files differ from it (the numbers are then
    those of uncommitted code)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        if not head:
            return "unknown"
        return head + ("+changes" if _git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def evaluate(
    suite: Suite,
    out: Path,
    generate: Generator,
    only: list[str] | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the suite (resuming from ``out``) and write report.json / report.md / report.png into ``out``.

    ``generate`` makes a synthetic data set (the CLI passes the sim bridge's generator: this layer
    does not import it)."""
    from isar_ros.isar import registry

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    per_dataset: dict[str, dict] = {}
    specs = [s for s in suite.datasets if not only or s.name in only or s.group in only]
    if not specs:
        raise ConfigurationError(f"no data set of {suite.path} is called {only}")
    run_key = {"method": suite.method, "options": suite.options, "modes": list(suite.modes)}
    for k, spec in enumerate(specs, 1):
        stored = out / "datasets" / f"{spec.name}.json"
        if stored.is_file() and not fresh:
            previous = json.loads(stored.read_text())
            if previous.get("run") == run_key and previous.get("recipe") == spec.key:
                per_dataset[spec.name] = previous
                continue
        if progress:
            print(f"[{k}/{len(specs)}] {spec.name} ({spec.split})", flush=True)
        t0 = time.perf_counter()
        folder = prepare(spec, suite.cache, generate)
        if folder is None:
            suite.skipped.append(spec.name)
            continue
        prepared = time.perf_counter() - t0
        method = registry.create(suite.method, suite.options)
        result = run_benchmark(IsarDataset(folder), method, suite.modes, progress=progress)
        entry = {
            "name": spec.name,
            "group": spec.group,
            "split": spec.split,
            "recipe": spec.key,
            "run": run_key,
            "scores": dataset_scores(result),
            "seconds": {"prepare": prepared, "run": time.perf_counter() - t0 - prepared},
        }
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(entry, indent=1))
        per_dataset[spec.name] = entry
    report = {
        "suite": suite.name,
        "suite_file": str(suite.path),
        "commit": commit(),
        "method": suite.method,
        "options": suite.options,
        "modes": list(suite.modes),
        "datasets": per_dataset,
        "skipped": suite.skipped,
        **summarise(suite, per_dataset),
        "seconds": time.perf_counter() - started,
        "seconds_all_datasets": sum(sum(d["seconds"].values()) for d in per_dataset.values()),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "report.png")
    return report


def _f(value: float) -> str:
    return "NaN" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    modes = report["modes"]
    lines = [
        f"# Evaluation `{report['suite']}`: `{report['method']}` {report['options'] or ''}",
        "",
        f"Suite file `{report['suite_file']}`, commit `{report['commit']}`; "
        f"{len(report['datasets'])} data sets in {report['seconds_all_datasets'] / 60:.1f} min "
        f"(preparing data included)."
        + (f" Skipped (source absent): {', '.join(report['skipped'])}." if report["skipped"] else ""),
        "",
        "mIoU is the official scene mean (NaN when a tracked object is never visible in a scene);",
        "every other number is a NaN-skipping mean. Pooled rows: means over data sets (min, std beside).",
        "",
    ]
    for split, pooled in report["pooled"].items():
        lines += [
            f"## Pooled: {split} ({pooled['datasets']} data sets"
            + (
                f"; multi-shot better than single-shot on {pooled['multi_better']})"
                if pooled.get("multi_better") is not None
                else ")"
            ),
            "",
            "| mode | " + " | ".join(label for _, label in METRICS) + " | worst mIoU (NaN-skip.) | std |",
            "|---" * (len(METRICS) + 3) + "|",
        ]
        for mode in modes:
            row = pooled[mode]
            lines.append(
                f"| {mode} | "
                + " | ".join(_f(row[key]["mean"]) for key, _ in METRICS)
                + f" | {_f(row['mIoU_nan_skipping']['min'])} | {_f(row['mIoU_nan_skipping']['std'])} |"
            )
        lines.append("")
    lines += [
        "## Groups (spread over seeds)",
        "",
        "| group | split | data sets | mode | mIoU (NaN-skip.) mean | min | std | "
        "false det. visible | false det. not visible |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group, entry in report["groups"].items():
        for mode in modes:
            m = entry["modes"][mode]
            lines.append(
                f"| {group} | {entry['split']} | {len(entry['datasets'])} | {mode} | "
                f"{_f(m['mIoU_nan_skipping']['mean'])} | "
                f"{_f(m['mIoU_nan_skipping']['min'])} | {_f(m['mIoU_nan_skipping']['std'])} | "
                f"{_f(m['false_detection_visible']['mean'])} | "
                f"{_f(m['false_detection_not_visible']['mean'])} |"
            )
    lines += [
        "",
        "## Per data set",
        "",
        "| data set | split | mode | " + " | ".join(label for _, label in METRICS) + " |",
        "|---" * (len(METRICS) + 3) + "|",
    ]
    for name, entry in report["datasets"].items():
        for mode in modes:
            s = entry["scores"][mode]
            lines.append(
                f"| {name} | {entry['split']} | {mode} | "
                + " | ".join(_f(s[key]) for key, _ in METRICS)
                + " |"
            )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["datasets"])
    if not names:
        return
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(names) + 2), 4))
    x = np.arange(len(names))
    for k, mode in enumerate(report["modes"]):
        values = [report["datasets"][n]["scores"][mode]["mIoU_nan_skipping"] for n in names]
        ax.bar(x + (k - 0.5) * 0.4, values, 0.4, label=mode)
    ax.set_xticks(x, names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("mIoU (NaN-skipping)")
    ax.set_ylim(0, 1)
    ax.set_title(f"{report['suite']}: {report['method']} {report['options'] or ''}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _delta(entry: dict[str, Any], previous: dict[str, Any], mode: str) -> float:
    return float(entry["scores"][mode]["mIoU_nan_skipping"] - previous["scores"][mode]["mIoU_nan_skipping"])


def compare(report: dict[str, Any], old: dict[str, Any]) -> str:
    """Deltas (new - old) of the pooled numbers and of each data set's NaN-skipping mIoU."""
    lines = [f"compared with {old.get('commit', '?')} ({old.get('method')} {old.get('options') or ''})"]
    for split, pooled in report["pooled"].items():
        before = old.get("pooled", {}).get(split)
        if not before:
            continue
        for mode in report["modes"]:
            parts = []
            for key, label in METRICS:
                a, b = pooled[mode][key]["mean"], before.get(mode, {}).get(key, {}).get("mean", math.nan)
                parts.append(
                    f"{label} {_f(a)} ({a - b:+.3f})" if not math.isnan(a - b) else f"{label} {_f(a)}"
                )
            lines.append(f"  {split} {mode}: " + ", ".join(parts))
    for name, entry in report["datasets"].items():
        previous = old.get("datasets", {}).get(name)
        if previous:
            deltas = [
                f"{mode} {_delta(entry, previous, mode):+.3f}"
                for mode in report["modes"]
                if mode in previous["scores"]
            ]
            lines.append(f"  {name}: mIoU (NaN-skip.) " + ", ".join(deltas))
    return "\n".join(lines)
