"""Faults in the running graph: concurrent teaching, the camera stopping, the teach node dying, the clock
jumping back."""

import threading
import time

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from isar_ros_msgs.msg import InstanceSegmentation, Prompt
from isar_ros_msgs.srv import ListObjects, RenameObject, TeachObject
from ros_client import RosClient, wait_until
from sensor_msgs.msg import RegionOfInterest
from test_perception import box_prompt, scene
from test_ros_nodes import INSTANCES, RED, Camera, answer_after_switch, instances_with

from isar_ros.core.memory_store import load_memory
from isar_ros.core.perception import Perception, PerceptionConfig
from isar_ros.msgio.image_codec import numpy_to_image
from isar_ros.ros.launcher import Graph, NodeSpec
from isar_ros.ros.services import wait_until_ready

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    rclpy.init()
    client = RosClient("faults_client")
    client.listen(INSTANCES, InstanceSegmentation)
    client.listen("/isar_inference/status", DiagnosticStatus)
    camera = Camera(client)
    memory_dir = tmp_path_factory.mktemp("memory")
    nodes = Graph(log_dir=tmp_path_factory.mktemp("logs"))
    state = {"client": client, "camera": camera, "graph": nodes, "memory_dir": memory_dir}
    state["teach"] = nodes.start(NodeSpec("teach_node", {"memory_dir": str(memory_dir)}), "teach")
    nodes.start(
        NodeSpec("inference_node", {"image_reliability": "reliable", "status_period_s": 0.2}), "inference"
    )
    client.call_fresh_node("/isar_teach/list", ListObjects, ListObjects.Request())
    yield state
    camera.stop()
    nodes.stop()
    client.close()
    rclpy.shutdown()


def red_request(name: str) -> TeachObject.Request:
    rgb, _ = scene({"red_stripes": RED})
    x, y, w, h = RED
    prompt = Prompt(has_box=True, box=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))
    return TeachObject.Request(name=name, prompts=[prompt], image=numpy_to_image(rgb, "rgb8"))


def test_concurrent_teach_requests_lose_no_object(graph):
    client = graph["client"]
    names = [f"concurrent {k}" for k in range(6)]
    results = {}

    def teach(name):
        own = client.node.create_client(TeachObject, "/isar_teach/teach")  # one client per caller
        assert wait_until_ready(own, timeout=30)
        future = own.call_async(red_request(name))
        wait_until(future.done, 120, f"the answer for {name}")
        results[name] = future.result()

    threads = [threading.Thread(target=teach, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert all(results[n].success for n in names), {n: r.message for n, r in results.items()}
    ids = {results[n].object_id for n in names}
    assert len(ids) == len(names)  # every request got its own object
    listed = {
        o.name: o.object_id
        for o in client.call("/isar_teach/list", ListObjects, ListObjects.Request()).objects
    }
    assert all(listed[n] == results[n].object_id for n in names)
    on_disk = load_memory(graph["memory_dir"])  # autosaved: nothing lost on disk either
    assert {o.name for o in on_disk.objects.values()} >= set(names)


def test_camera_stops_and_resumes(graph):
    client, camera = graph["client"], graph["camera"]
    camera.paused = True
    threading.Event().wait(1.5)
    answered = len(client.messages(INSTANCES))
    threading.Event().wait(1.0)
    assert len(client.messages(INSTANCES)) == answered  # no camera, no answers (and no crash)
    camera.paused = False
    instances_with(client, lambda m: True, timeout=30)


def test_teach_node_dies_and_comes_back(graph):
    client, camera, nodes = graph["client"], graph["camera"], graph["graph"]
    teaching = numpy_to_image(scene({"green_checker": (60, 60, 70, 70)}, seed=11)[0], "rgb8")
    prompt = Prompt(has_box=True, box=RegionOfInterest(x_offset=60, y_offset=60, width=70, height=70))
    taught = client.call(
        "/isar_teach/teach",
        TeachObject,
        TeachObject.Request(name="survivor", prompts=[prompt], image=teaching),
    )
    assert taught.success  # an object of its own: copies of one object would compete for its pixels
    camera.rgb = scene({"green_checker": (200, 100, 70, 70)}, seed=5)[0]
    instances_with(client, lambda m: any(i.name == "survivor" for i in m.instances))
    version = taught.memory_version
    graph["teach"].popen.kill()  # SIGKILL: no shutdown save
    graph["teach"].popen.wait()
    # the inference node keeps serving the last memory
    answer = answer_after_switch(client, camera)
    assert answer.memory_version == version and any(i.name == "survivor" for i in answer.instances)
    graph["teach"] = nodes.start(
        NodeSpec("teach_node", {"memory_dir": str(graph["memory_dir"])}), "teach_again"
    )
    # The killed node stays in DDS discovery until its lease ends, so a request may reach only the dead
    # server: an idempotent call, repeated until the new node answers, then teach once.
    listed = client.call_fresh_node("/isar_teach/list", ListObjects, ListObjects.Request())
    assert "survivor" in {o.name for o in listed.objects}
    again = client.call("/isar_teach/teach", TeachObject, red_request("after restart"))
    assert again.success and again.memory_version == version + 1  # the autosaved memory came back whole
    instances_with(client, lambda m: m.memory_version == again.memory_version)


def test_clock_jumps_back(graph):
    client, camera = graph["client"], graph["camera"]
    camera.stamp_offset = -1500  # a replay loop starting over
    answer = answer_after_switch(client, camera)
    assert answer.header.stamp.sec < 2000  # answered, with the image's (earlier) stamp
    camera.stamp_offset = 0
    answer_after_switch(client, camera)


def test_teach_node_killed_in_the_middle_of_a_save_restarts_with_the_previous_memory(graph, tmp_path):
    """SIGKILL while the autosave writes its arrays file (see scripts/crash_safety.py for many trials)."""
    client, nodes, folder = graph["client"], graph["graph"], tmp_path / "memory"
    # A memory big enough that a save takes tens of milliseconds: three objects taught on 640x480.
    perception = Perception(PerceptionConfig(mask_predictor="grabcut", device="cpu"))
    rgb, masks = scene(
        {
            "red_stripes": (60, 60, 140, 120),
            "blue_dots": (300, 200, 150, 130),
            "green_checker": (420, 40, 140, 110),
        },
        size=(480, 640),
    )
    frame = perception.encode(rgb)
    for name, mask in masks.items():
        perception.teach([(frame, [box_prompt(mask)])], name=name)
    perception.save(folder)
    previous = load_memory(folder)
    names = {i: o.name for i, o in previous.objects.items()}
    first = nodes.start(
        NodeSpec("teach_node", {"memory_dir": str(folder)}, remappings={"__node": "crash_teach"}),
        "crash_teach",
    )
    client.call_fresh_node("/crash_teach/list", ListObjects, ListObjects.Request())
    temporary = lambda: {p.name for p in folder.glob(".arrays-*.tmp")}  # noqa: E731
    assert not temporary()
    rename = client.node.create_client(RenameObject, "/crash_teach/rename")
    assert wait_until_ready(rename, timeout=30)
    rename.call_async(RenameObject.Request(object_id=1, new_name="never saved"))
    deadline = time.monotonic() + 30
    while not temporary():  # a tight loop: the save lasts only tens of milliseconds
        assert time.monotonic() < deadline, "the autosave never began"
        time.sleep(0.0002)
    first.popen.kill()
    first.popen.wait()
    assert temporary(), "the kill came after the save had finished: this trial tested nothing"
    on_disk = load_memory(folder)  # loads (the old manifest still names the old arrays)
    assert (on_disk.version, {i: o.name for i, o in on_disk.objects.items()}) == (previous.version, names)
    nodes.start(
        NodeSpec("teach_node", {"memory_dir": str(folder)}, remappings={"__node": "crash_teach_again"}),
        "crash_teach_again",
    )
    listed = client.call_fresh_node("/crash_teach_again/list", ListObjects, ListObjects.Request())
    assert (
        listed.memory_version == previous.version and {o.object_id: o.name for o in listed.objects} == names
    )
    renamed = client.call(
        "/crash_teach_again/rename",
        RenameObject,
        RenameObject.Request(object_id=1, new_name="saved after the restart"),
    )
    assert renamed.success and not temporary()  # the next complete save removes what the killed one left
    assert load_memory(folder).objects[1].name == "saved after the restart"
