"""Crash safety of the saved memory: SIGKILL while saving, many times; the memory must always load as
the previous or the new complete version, never a partial one.

    .venv/bin/python scripts/crash_safety.py [--node-trials 200] [--writer-trials 300]

Two experiments, one report (docs/crash_safety.md):

* The teach node (``--node-trials``): a real ``isar_teach`` process on a memory of 10 objects gets
  teach, rename and forget requests back to back (each one autosaves), and is killed with SIGKILL -
  on even trials at a uniformly random point of a save (timed by watching the node's previous save
  from outside: a temporary arrays file appears ... manifest.json is replaced), on odd trials at a
  random moment of the workload. Then the folder is
  loaded and must equal the state the node last acknowledged or the state of the request in flight
  (ids, names, version); the next trial restarts the node on the same folder and checks that its
  ~/list shows exactly that state. The files left behind tell where in the save the kill landed.
* The save alone (``--writer-trials``): a process saving two different memories alternately into
  one folder in a tight loop, killed at a random moment within its first three saves; the folder
  must load as exactly one of the two (ids, names, weights).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from isar_ros.core.memory_snapshot import MemoryFormatError  # noqa: E402
from isar_ros.core.memory_store import load_memory, save_memory  # noqa: E402

BASE_OBJECTS = 10

WRITER = r"""
import sys
from isar_ros.core.memory_store import load_memory, save_memory
memories = [load_memory(p) for p in sys.argv[1:3]]
target = sys.argv[3]
print("ready", flush=True)
while True:
    for memory in memories:
        save_memory(memory, target)
"""


def teach_base_memory(objects: int):
    """A Perception with ``objects`` taught objects named 'object <k>' (no ROS)."""
    from benchmark_core import teach_test_objects

    from isar_ros.core.perception import Perception, PerceptionConfig

    perception = Perception(PerceptionConfig(device="cpu", mask_predictor="grabcut"))
    teach_test_objects(perception, objects)
    return perception


def median_save_seconds(memory, folder: Path, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        save_memory(memory, folder)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def state_of(memory) -> tuple[int, dict[int, str]]:
    return memory.version, {i: o.name for i, o in memory.objects.items()}


# ---- the teach node ---------------------------------------------------------------------------------
class Workload(threading.Thread):
    """Teach, rename and forget requests back to back; keeps the last acknowledged state and the
    request in flight. A new object's id is None until its answer arrives."""

    def __init__(self, node, prefix: str, version: int, objects: dict[int, str], counter: int):
        super().__init__(daemon=True)
        from isar_ros_msgs.srv import ForgetObject, RenameObject, TeachObject

        self.types = {"teach": TeachObject, "rename": RenameObject, "forget": ForgetObject}
        self.node, self.prefix, self.counter = node, prefix, counter
        self.clients = {op: node.create_client(kind, f"{prefix}/{op}") for op, kind in self.types.items()}
        self.acked: tuple[int, dict] = (version, dict(objects))
        self.pending: dict | None = None
        self.requests_answered = 0
        self.stop = threading.Event()
        self.error = ""

    def wait_ready(self, timeout: float) -> bool:
        from isar_ros.ros.services import wait_until_ready

        return all(wait_until_ready(c, timeout) for c in self.clients.values())

    def run(self) -> None:
        base = sorted(i for i, name in self.acked[1].items() if name.startswith("object"))
        new_id = None
        while not self.stop.is_set():
            self.counter += 1
            step = self.counter % 4
            if step == 0 or new_id is None:
                op, request, expect = self.teach_request()
            elif step == 1:
                op, request = (
                    "rename",
                    self.types["rename"].Request(object_id=new_id, new_name=f"renamed {self.counter}"),
                )
                expect = {**self.acked[1], new_id: request.new_name}
            elif step == 2:
                object_id = base[self.counter % len(base)]
                op, request = (
                    "rename",
                    self.types["rename"].Request(
                        object_id=object_id, new_name=f"object {object_id} v{self.counter}"
                    ),
                )
                expect = {**self.acked[1], object_id: request.new_name}
            else:
                op, request = "forget", self.types["forget"].Request(object_id=new_id)
                expect = {i: n for i, n in self.acked[1].items() if i != new_id}
            self.pending = expect
            future = self.clients[op].call_async(request)
            while not future.done():
                if self.stop.wait(0.002):
                    return
            answer = future.result()
            if not answer.success:
                self.error = f"{op} refused: {answer.message}"
                return
            if op == "teach":
                new_id = answer.object_id
                expect = {(new_id if i is None else i): n for i, n in expect.items()}
            elif op == "forget":
                new_id = None
            self.acked, self.pending = (answer.memory_version, expect), None
            self.requests_answered += 1

    def teach_request(self):
        from benchmark_core import test_image
        from isar_ros_msgs.msg import Prompt
        from sensor_msgs.msg import RegionOfInterest

        from isar_ros.msgio.image_codec import numpy_to_image

        image, boxes = test_image(seed=self.counter % 5)
        x0, y0, x1, y1 = boxes[(self.counter // 5) % 4]
        prompt = Prompt(
            has_box=True,
            box=RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0 + 1, height=y1 - y0 + 1),
        )
        name = f"taught {self.counter}"
        request = self.types["teach"].Request(
            name=name, prompts=[prompt], image=numpy_to_image(image, "rgb8")
        )
        return "teach", request, {**self.acked[1], None: name}

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=5)
        for client in self.clients.values():
            self.node.destroy_client(client)


def matches(loaded: dict[int, str], expected: dict) -> bool:
    """Equal ids and names; an expected id of None (a teach whose answer never came) matches any new id."""
    known = {i: n for i, n in expected.items() if i is not None}
    unknown = [n for i, n in expected.items() if i is None]
    rest = {i: n for i, n in loaded.items() if i not in known}
    return all(loaded.get(i) == n for i, n in known.items()) and sorted(rest.values()) == sorted(unknown)


def where_killed(folder: Path, before: set[str], manifest_version: int, acked_version: int) -> str:
    new = {p.name for p in folder.iterdir()} - before
    if any(n.startswith(".arrays-") for n in new):
        return "writing or checksumming the arrays file (its temporary file was left)"
    if any(n.startswith(".manifest") for n in new):
        return "writing the manifest (its temporary file was left)"
    if sum(n.startswith("arrays-") for n in new) > 0 and len(list(folder.glob("arrays-*.npz"))) > 1:
        return (
            "arrays file in place, manifest not yet replaced"
            if manifest_version == acked_version
            else "manifest replaced, old arrays file not yet removed"
        )
    return "outside a save (no file left behind)"


def _temporary_arrays(folder: Path) -> set[str]:
    return {e.name for e in os.scandir(folder) if e.name.startswith(".arrays-")}


def wait_for_save_start(folder: Path, workload: Workload, timeout: float = 60.0) -> None:
    """Return as soon as a save begins: a new temporary arrays file appears in ``folder``."""
    seen = _temporary_arrays(folder)
    deadline = time.monotonic() + timeout
    while not _temporary_arrays(folder) - seen:
        if time.monotonic() > deadline or workload.error:
            raise RuntimeError(
                f"no save began within {timeout} s ({workload.error or 'no error from the node'})"
            )
        time.sleep(0.0005)


def time_one_save(folder: Path, workload: Workload, timeout: float = 60.0) -> float:
    """Seconds from a save's start to the replacement of manifest.json, watched from outside the node."""
    inode = os.stat(folder / "manifest.json").st_ino
    wait_for_save_start(folder, workload, timeout)
    start = time.monotonic()
    while os.stat(folder / "manifest.json").st_ino == inode:
        if time.monotonic() - start > timeout:
            raise RuntimeError("a save began but manifest.json was never replaced")
        time.sleep(0.0005)
    return time.monotonic() - start


def list_state(node, prefix: str, timeout: float = 60.0) -> tuple[int, dict[int, str]]:
    from isar_ros_msgs.srv import ListObjects

    client = node.create_client(ListObjects, f"{prefix}/list")
    try:
        from isar_ros.ros.services import wait_until_ready

        if not wait_until_ready(client, timeout):
            raise RuntimeError(f"{prefix}/list did not appear within {timeout} s")
        future = client.call_async(ListObjects.Request())
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{prefix}/list did not answer within {timeout} s")
            time.sleep(0.01)
        answer = future.result()
        return answer.memory_version, {o.object_id: o.name for o in answer.objects}
    finally:
        node.destroy_client(client)


def node_trials(count: int, work: Path, rng: random.Random) -> dict:
    import rclpy

    from isar_ros.ros.environment import pick_domain_id, ros_environment
    from isar_ros.ros.launcher import Graph, NodeSpec

    os.environ.update(ros_environment(localhost_only=True, domain_id=pick_domain_id()))
    folder = work / "teach_node_memory"
    perception = teach_base_memory(BASE_OBJECTS)
    save_seconds = median_save_seconds(perception.memory, work / "probe")
    perception.save(folder)
    on_disk = state_of(load_memory(folder))
    rclpy.init()
    node = rclpy.create_node("isar_crash_safety")
    executor = rclpy.executors.MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    result = {
        "trials": 0,
        "previous": 0,
        "new": 0,
        "bad": [],
        "restart_mismatch": [],
        "where": {},
        "requests": 0,
        "save_ms": save_seconds * 1000,
        "start_s": [],
        "node_save_ms": [],
    }
    counter = 0
    started = time.perf_counter()
    graph = Graph(env=os.environ.copy(), log_dir=work / "logs")
    try:
        for trial in range(count + 1):  # the extra start only checks the last kill's restart
            name = f"isar_teach_crash{trial}"  # a fresh name: the killed node may linger in DDS discovery
            t0 = time.perf_counter()
            process = graph.start(
                NodeSpec("teach_node", {"memory_dir": str(folder)}, remappings={"__node": name}), name
            )
            listed = list_state(node, f"/{name}")
            result["start_s"].append(time.perf_counter() - t0)
            if listed != on_disk:
                result["restart_mismatch"].append(
                    f"trial {trial}: the node lists {listed}, the folder holds {on_disk}"
                )
            if trial == count:
                process.stop()
                break
            before = {p.name for p in folder.iterdir()}
            workload = Workload(node, f"/{name}", *listed, counter)
            if not workload.wait_ready(30):
                raise RuntimeError(f"the services of {name} did not appear")
            workload.start()
            if trial % 2 == 0:
                mode = "during a save"
                timed = time_one_save(folder, workload)
                result["node_save_ms"].append(timed * 1000)
                wait_for_save_start(folder, workload)
                time.sleep(rng.uniform(0, 1.25 * timed))
            else:
                mode = "at a random moment"
                time.sleep(rng.uniform(0.0, 3.0))
            if workload.error:
                raise RuntimeError(workload.error)
            process.popen.send_signal(signal.SIGKILL)
            process.popen.wait()
            process.stop()
            workload.close()
            counter = workload.counter + 1
            result["requests"] += workload.requests_answered
            (acked_version, acked), pending = workload.acked, workload.pending
            try:
                on_disk = state_of(load_memory(folder))
            except MemoryFormatError as error:
                result["bad"].append(f"trial {trial} ({mode}): {error}")
                break
            if on_disk == (acked_version, acked):
                result["previous"] += 1
            elif pending is not None and on_disk[0] == acked_version + 1 and matches(on_disk[1], pending):
                result["new"] += 1
            else:
                result["bad"].append(
                    f"trial {trial} ({mode}): folder holds {on_disk}, acknowledged {acked_version} {acked}, "
                    f"in flight {pending}"
                )
            where = where_killed(folder, before, on_disk[0], acked_version)
            result["where"].setdefault(mode, {}).setdefault(where, 0)
            result["where"][mode][where] += 1
            result["trials"] += 1
            print(
                f"trial {trial + 1}/{count}: {mode}, {where}, {result['previous']} previous / "
                f"{result['new']} new / "
                f"{len(result['bad'])} bad",
                flush=True,
            )
    finally:
        graph.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    result["seconds"] = time.perf_counter() - started
    return result


# ---- the save alone ------------------------------------------------------------------------------------
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
    return (
        memory.version,
        tuple((i, o.name, o.weights.tobytes()) for i, o in sorted(memory.objects.items())),
    )


def writer_trials(count: int, work: Path, rng: random.Random) -> dict:
    a, b = make_memories(work)
    expected = {signature(load_memory(a)): "A", signature(load_memory(b)): "B"}
    save_seconds = median_save_seconds(load_memory(b), work / "probe_writer")
    outcomes = {"A": 0, "B": 0, "partial or unreadable": 0}
    started = time.perf_counter()
    for trial in range(count):
        target = work / f"writer{trial}"
        save_memory(load_memory(a), target)  # a complete previous version to start from
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(a), str(b), str(target)], stdout=subprocess.PIPE, text=True
        )
        if writer.stdout.readline().strip() != "ready":
            raise RuntimeError("the writer process did not start; run it by hand to see why")
        time.sleep(rng.uniform(0.0, 3 * save_seconds))
        if writer.poll() is not None:
            raise RuntimeError("the writer process died by itself: the trial would test nothing")
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        try:
            outcomes[expected.get(signature(load_memory(target)), "partial or unreadable")] += 1
        except MemoryFormatError:
            outcomes["partial or unreadable"] += 1
    return {"outcomes": outcomes, "save_ms": save_seconds * 1000, "seconds": time.perf_counter() - started}


def report(args, node: dict | None, writer: dict | None) -> str:
    parts = [
        "# Crash safety of the saved memory\n",
        f"`.venv/bin/python scripts/crash_safety.py --node-trials {args.node_trials} --writer-trials "
        f"{args.writer_trials}` "
        "on 2 CPU cores. A save writes the arrays file under a temporary name, fsyncs it, renames it to a "
        "name made of "
        "the version and its SHA-256, fsyncs the folder, then replaces manifest.json (which names the "
        "arrays file and "
        "its checksum) the same way, and only then removes older files. A reader trusts only what "
        "manifest.json names "
        "and checks the checksum.\n",
    ]
    if node:
        where = "\n".join(
            f"| {mode} | {place} | {n} |"
            for mode, places in node["where"].items()
            for place, n in sorted(places.items())
        )
        parts.append(f"""## The teach node killed while it saves

{node["trials"]} times a real `isar_teach` process (memory of {BASE_OBJECTS} objects; one save takes
{node["save_ms"]:.0f} ms
in-process) answering teach, rename and forget requests back to back ({node["requests"]} requests answered in
all,
each one autosaved) was killed with SIGKILL; then its folder was loaded and the node restarted on it.

| after the kill, the folder loads as | trials |
|---|---|
| the last state the node acknowledged (previous version) | {node["previous"]} |
| the state of the request in flight (new version) | {node["new"]} |
| partial, mixed, unreadable or any other state | {len(node["bad"])} |

Kills timed "during a save" waited for one whole save of the node (from the first temporary file to the
replacement of manifest.json; median {statistics.median(node["node_save_ms"] or [float("nan")]):.0f} ms),
then killed at a uniformly random
point within 1.25 times that duration of the next save. Kills "at a random moment" came within 3 s of the
first request.

Restarts whose ~/list differed from the folder: {len(node["restart_mismatch"])} of {len(node["start_s"])}
starts
(node start to first ~/list answer: median {statistics.median(node["start_s"]):.1f} s). Where the kills
landed, read from the files left behind:

| kill timing | the kill landed | trials |
|---|---|---|
{where}

Time: {node["seconds"]:.0f} s.
""")
        if node["bad"] or node["restart_mismatch"]:
            parts.append(
                "Failures:\n\n"
                + "\n".join(f"- {line}" for line in node["bad"] + node["restart_mismatch"])
                + "\n"
            )
    if writer:
        o = writer["outcomes"]
        parts.append(f"""## The save alone

{args.writer_trials} times a process saving two different memories A (2 objects) and B (3 objects)
alternately into
one folder was killed with SIGKILL at a random moment within its first three saves (one save:
{writer["save_ms"]:.0f} ms).

| after the kill, the folder loads as | trials |
|---|---|
| exactly A (ids, names, weights) | {o["A"]} |
| exactly B | {o["B"]} |
| partial, mixed or unreadable | {o["partial or unreadable"]} |

Time: {writer["seconds"]:.0f} s.
""")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--node-trials", type=int, default=200)
    parser.add_argument("--writer-trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "crash_safety.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="isar_crash_"))
    rng = random.Random(args.seed)
    node = node_trials(args.node_trials, work, rng) if args.node_trials else None
    writer = writer_trials(args.writer_trials, work, rng) if args.writer_trials else None
    text = report(args, node, writer)
    args.out.write_text(text)
    print(text)
    failed = (node and (node["bad"] or node["restart_mismatch"])) or (
        writer and writer["outcomes"]["partial or unreadable"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
