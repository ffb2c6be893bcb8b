"""Crash safety of the memory on disk: SIGKILL a process while it saves, many times; the memory must
always load as the previous or the new complete version, never a partial one.

    .venv/bin/python scripts/crash_safety.py [--trials 300]

Each trial starts a writer process that alternately saves two different memories (A: 2 objects,
B: 3 objects) into one folder in a tight loop, kills it with SIGKILL after a random delay, then
loads the folder and checks that it is exactly A or exactly B (object ids, names, weights).
Writes docs/crash_safety.md.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WRITER = r"""
import sys
from isar_ros.core.memory import InstanceMemory
memories = [InstanceMemory.load(p) for p in sys.argv[1:3]]
target = sys.argv[3]
print("ready", flush=True)
while True:
    for memory in memories:
        memory.save(target)
"""


def make_memories(folder: Path) -> tuple[Path, Path]:
    from isar_ros.core.perception import Perception, PerceptionConfig
    from isar_ros.core.prompt_mask import Prompt

    perception = Perception(PerceptionConfig(device="cpu", mask_predictor="grabcut"))
    rgb = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    rgb[40:120, 40:140] = (220, 40, 40)
    rgb[140:220, 180:300] = (40, 60, 220)
    rgb[20:90, 200:300] = (30, 200, 60)
    frame = perception.encode(rgb)
    perception.teach([(frame, [Prompt.from_isar(box_xyxy=(40, 40, 139, 119))])], name="red")
    perception.teach([(frame, [Prompt.from_isar(box_xyxy=(180, 140, 299, 219))])], name="blue")
    perception.save(folder / "A")
    perception.teach([(frame, [Prompt.from_isar(box_xyxy=(200, 20, 299, 89))])], name="green")
    perception.save(folder / "B")
    return folder / "A", folder / "B"


def signature(memory) -> tuple:
    return (memory.version, tuple((i, o.name, o.weights.tobytes()) for i, o in sorted(memory.objects.items())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "crash_safety.md")
    args = parser.parse_args()
    from isar_ros.core.memory import InstanceMemory, MemoryFormatError

    work = Path(tempfile.mkdtemp(prefix="isar_crash_"))
    a, b = make_memories(work)
    expected = {signature(InstanceMemory.load(a)): "A", signature(InstanceMemory.load(b)): "B"}
    probe = time.perf_counter()
    InstanceMemory.load(b).save(work / "probe")
    save_seconds = time.perf_counter() - probe
    outcomes = {"A": 0, "B": 0, "partial or unreadable": 0}
    leftovers = 0
    rng = random.Random(0)
    started = time.perf_counter()
    for trial in range(args.trials):
        target = work / f"trial{trial}"
        InstanceMemory.load(a).save(target)  # a complete previous version to start from
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(a), str(b), str(target)], stdout=subprocess.PIPE, text=True)
        if writer.stdout.readline().strip() != "ready":
            raise RuntimeError("the writer process did not start; run it by hand to see why")
        time.sleep(rng.uniform(0.0, 3 * save_seconds))  # anywhere in the first few saves
        if writer.poll() is not None:
            raise RuntimeError("the writer process died by itself: the trial would test nothing")
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        try:
            outcomes[expected.get(signature(InstanceMemory.load(target)), "partial or unreadable")] += 1
        except MemoryFormatError:
            outcomes["partial or unreadable"] += 1
        leftovers += len(list(target.glob(".*.tmp")))
    seconds = time.perf_counter() - started
    text = f"""# Crash safety of the saved memory

`.venv/bin/python scripts/crash_safety.py --trials {args.trials}`: {args.trials} times, a process saving two
different memories alternately into one folder (the code path of the teach node's autosave) was
killed with SIGKILL after a random delay within its first three saves (one save took {save_seconds * 1000:.0f} ms);
then the folder was loaded.

| outcome after the kill | trials |
|---|---|
| loads as the complete version A | {outcomes['A']} |
| loads as the complete version B | {outcomes['B']} |
| partial, mixed or unreadable | {outcomes['partial or unreadable']} |

Temporary files left behind by killed saves (removed by the next successful save): {leftovers}.
Time: {seconds:.0f} s. Why it holds: the arrays file is written under a new name first, the manifest
naming it (with its SHA-256) is replaced atomically with os.replace after fsync, and only then are
older arrays files removed.
"""
    args.out.write_text(text)
    print(text)
    return 0 if outcomes["partial or unreadable"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
