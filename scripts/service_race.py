"""How often is the first request to a freshly started service server lost?

    .venv/bin/python scripts/service_race.py [--trials 80] [--settle 0.5] [--profile config/fastdds_shm.xml]
    [--load 3]

Each trial starts a new server process (std_srvs/Trigger), and this process - which holds many other
endpoints, like a test or a UI would - calls it once as soon as ``wait_for_service`` succeeds (after
``--settle`` seconds), and waits 3 s for the answer. ``--load`` busy processes keep the CPUs loaded.
Prints how many answers were lost and how many servers logged "failed to send response".
Used for docs/hardening.md: the shipped profile's ``service`` publisher profile and the settle of
``isar_ros.ros.services.wait_until_ready`` are the two defences.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from isar_ros.ros.environment import pick_domain_id, ros_environment  # noqa: E402

SERVER = """
import sys, rclpy
from std_srvs.srv import Trigger
rclpy.init()
node = rclpy.create_node(sys.argv[1])
node.create_service(Trigger, sys.argv[2], lambda request, response: Trigger.Response(success=True))
rclpy.spin(node)
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=80)
    parser.add_argument(
        "--settle", type=float, default=0.5, help="seconds between wait_for_service and the request"
    )
    parser.add_argument(
        "--profile", type=Path, default=ROOT / "config" / "fastdds_shm.xml", help="Fast DDS XML profile"
    )
    parser.add_argument("--load", type=int, default=3, help="busy processes keeping the CPUs loaded")
    args = parser.parse_args()
    os.environ.update(ros_environment(localhost_only=True, domain_id=pick_domain_id()))
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(args.profile.resolve())

    import rclpy
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    rclpy.init()
    node = rclpy.create_node("service_race_client")
    for k in range(30):  # other endpoints in this participant slow its discovery down, as in a real client
        node.create_subscription(Image, f"/service_race/other{k}", lambda message: None, 10)
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    logs = Path(tempfile.mkdtemp(prefix="isar_service_race_"))
    lost = refused = 0
    try:
        for trial in range(args.trials):
            service = f"/service_race{trial}/ping"
            log = logs / f"server{trial}.log"
            with open(log, "w") as output:
                server = subprocess.Popen(
                    [sys.executable, "-c", SERVER, f"service_race_server{trial}", service],
                    stdout=subprocess.DEVNULL,
                    stderr=output,
                )
            client = node.create_client(Trigger, service)
            if not client.wait_for_service(timeout_sec=30):
                raise RuntimeError(f"server {trial} never appeared; see {log}")
            time.sleep(args.settle)
            future = client.call_async(Trigger.Request())
            deadline = time.monotonic() + 3.0
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.005)
            lost += not future.done()
            node.destroy_client(client)
            server.kill()
            server.wait()
            refused += "failed to send response" in log.read_text(errors="replace")
    finally:
        for process in busy:
            process.kill()
    print(
        f"profile {args.profile.name}, settle {args.settle:g} s, {args.load} busy processes: "
        f"{lost} of {args.trials} first answers lost; {refused} servers logged 'failed to send response'"
    )
    executor.shutdown()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
