"""The nodes as a roboticist runs them: separate processes, real DDS on loopback, real services and topics."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point, Point32, PointStamped, PoseStamped
from isar_ros_msgs.msg import InstanceMemory, InstanceSegmentation, ObjectMap, Prompt
from isar_ros_msgs.srv import ForgetObject, ListObjects, RenameObject, TeachObject, WhereIs
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_client import LATCHED, RosClient, wait_until
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from test_perception import scene
from visualization_msgs.msg import Marker, MarkerArray

from isar_ros.msgio.image_codec import image_to_numpy, numpy_to_image
from isar_ros.ros.launcher import Graph, NodeSpec

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RED = (30, 40, 70, 60)  # x, y, w, h of the taught object in the teaching frame
MOVED = (200, 30, 80, 70)
INSTANCES = "/isar_inference/instances"
FEEDBACK = "/isar_teach/feedback"


class Camera:
    """Publishes the current frame at 10 Hz (image, camera_info, depth, pose; one stamp per frame)."""

    def __init__(self, client: RosClient, rgb: np.ndarray | None = None):
        self.client = client
        self.rgb = scene({})[0] if rgb is None else rgb
        self.image_override: Image | None = None
        self.paused = False
        self.stamp_offset = 0  # seconds added to every stamp (a jump back in time when negative)
        self.depth_shape: tuple[int, int] | None = None  # another depth size than the image's (unregistered)
        self.count = 0
        self.running = True
        self.stamps: list = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            if self.paused:
                threading.Event().wait(0.05)
                continue
            self.count += 1
            header = Header(frame_id="camera_optical")
            header.stamp.sec, header.stamp.nanosec = (
                2000 + self.stamp_offset + self.count // 10,
                (self.count % 10) * 100_000_000,
            )
            image = self.image_override or numpy_to_image(self.rgb, "rgb8", header=header)
            image.header = header
            height, width = self.rgb.shape[:2]
            info = CameraInfo(
                header=header, width=width, height=height, k=[160.0, 0, 160.0, 0, 160.0, 120.0, 0, 0, 1]
            )
            pose = PoseStamped(header=Header(stamp=header.stamp, frame_id="world"))
            pose.pose.orientation.w = 1.0  # optical frame = world frame: x right, y down, z forward
            depth = np.full(self.depth_shape or (height, width), 2000, np.uint16)
            self.client.publish("/depth", numpy_to_image(depth, "16UC1", header=header))
            self.client.publish("/camera_info", info)
            self.client.publish("/camera_pose", pose)
            self.client.publish("/image", image)
            self.stamps.append(header.stamp)
            threading.Event().wait(0.1)

    def stop(self):
        self.running = False
        self.thread.join()


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    rclpy.init()
    client = RosClient()
    client.listen(INSTANCES, InstanceSegmentation)
    client.listen(FEEDBACK, String)
    client.listen("/isar_inference/status", DiagnosticStatus)
    client.listen("/memory", InstanceMemory, LATCHED)
    client.listen("/isar_inference/overlay", Image)
    client.listen("/isar_inference/label_image", Image)
    client.listen("/isar_inference/camera_info", CameraInfo)
    client.listen("/diagnostics", DiagnosticArray)
    client.listen("/isar_inference/markers", MarkerArray)
    client.listen("/object_map", ObjectMap, LATCHED)
    camera = Camera(client)
    memory_dir = tmp_path_factory.mktemp("memory")
    graph = Graph(log_dir=tmp_path_factory.mktemp("logs"))
    try:
        teach = graph.start(NodeSpec("teach_node", {"memory_dir": str(memory_dir)}), "teach")
        inference = graph.start(
            NodeSpec("inference_node", {"image_reliability": "reliable", "status_period_s": 0.2}),
            "inference",
        )
        client.call_fresh_node("/isar_teach/list", ListObjects, ListObjects.Request())
        yield {
            "client": client,
            "camera": camera,
            "graph": graph,
            "memory_dir": memory_dir,
            "teach": teach,
            "inference": inference,
        }
    finally:  # also when starting failed: no node outlives the test
        camera.stop()
        graph.stop()
        client.close()
        rclpy.shutdown()


def teach_red(client, name="red mug", image=None) -> TeachObject.Response:
    rgb, _ = scene({"red_stripes": RED, "blue_dots": (180, 120, 80, 70)})
    x, y, w, h = RED
    prompt = Prompt(has_box=True, box=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h))
    request = TeachObject.Request(name=name, prompts=[prompt], image=image or numpy_to_image(rgb, "rgb8"))
    return client.call("/isar_teach/teach", TeachObject, request)


def instances_with(client, predicate, timeout=60.0) -> InstanceSegmentation:
    after = len(client.messages(INSTANCES))
    return client.wait_for(INSTANCES, predicate, timeout, after=after)


def answer_after_switch(client, camera, frames: int = 3) -> InstanceSegmentation:
    """The answer to the ``frames``-th camera frame sent after now (earlier answers may show the old view)."""
    switched, seen = camera.count, len(client.messages(INSTANCES))
    wait_until(lambda: camera.count >= switched + frames, 30, "the camera to send new frames")

    def sent_after_switch(m):
        later = {(s.sec, s.nanosec) for s in camera.stamps[switched + frames - 1 :]}
        return (m.header.stamp.sec, m.header.stamp.nanosec) in later

    return client.wait_for(INSTANCES, sent_after_switch, 60, after=seen)


def ids_in(msg):
    return {(i.object_id, i.name) for i in msg.instances}


def status(client) -> dict:
    msg = client.wait_for("/isar_inference/status", after=len(client.messages("/isar_inference/status")))
    return {kv.key: kv.value for kv in msg.values}


def try_parameter(client, name, value, node="/isar_inference"):
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return client.call(f"{node}/set_parameters", SetParameters, request).results[0]


def set_parameter(client, name, value, node="/isar_inference"):
    result = try_parameter(client, name, value, node)
    assert result.successful, result.reason


def test_taught_object_is_found_with_its_id_and_name(ros):
    client, camera = ros["client"], ros["camera"]
    response = teach_red(client)
    assert response.success, response.message
    assert response.object_id >= 1 and len(response.masks) == 1
    mask = image_to_numpy(response.masks[0]) > 0
    x, y, w, h = RED
    expected = np.zeros_like(mask)
    expected[y : y + h, x : x + w] = True
    assert (mask & expected).sum() / (mask | expected).sum() > 0.8  # the operator sees what was taught
    camera.rgb, truth = scene({"red_stripes": MOVED}, seed=5)
    found = instances_with(client, lambda m: (response.object_id, "red mug") in ids_in(m))
    labels = image_to_numpy(found.label_image)
    assert found.label_image.encoding == "mono16" and found.header.frame_id == "camera_optical"
    assert ((labels == response.object_id) & truth["red_stripes"]).sum() / (
        (labels == response.object_id) | truth["red_stripes"]
    ).sum() > 0.6
    # The label image and the overlay are sent while someone subscribes (this client does): for the
    # same frame, the same labels as inside the instances message.
    same_frame = lambda m: m.header.stamp == found.header.stamp  # noqa: E731
    label_image = client.wait_for("/isar_inference/label_image", same_frame, timeout=30)
    np.testing.assert_array_equal(image_to_numpy(label_image), labels)
    client.wait_for("/isar_inference/overlay", same_frame, timeout=30)


def test_absent_object_is_not_reported(ros):
    client, camera = ros["client"], ros["camera"]
    assert teach_red(client, "red mug again").success
    camera.rgb = scene({}, seed=8)[0]
    message = answer_after_switch(client, camera)
    assert not message.instances and not image_to_numpy(message.label_image).any()


def test_rviz_click_lands_on_the_projected_pixel_and_teaches(ros):
    client = ros["client"]
    client.wait_for_subscriber("/clicked_point")
    client.publish("/isar_teach/arm", String(data="clicked ball"))
    client.wait_for(FEEDBACK, lambda m: m.data.startswith("armed"), 30)
    # optical frame = world frame, fx = fy = 160, cx = 160, cy = 120; depth 2 m everywhere
    point = PointStamped(header=Header(frame_id="world"), point=Point(x=0.5, y=0.25, z=2.0))
    client.publish("/clicked_point", point)
    client.wait_for(FEEDBACK, lambda m: "RViz click -> pixel (200, 140)" in m.data, 30)
    behind = PointStamped(header=Header(frame_id="world"), point=Point(x=0.0, y=0.0, z=-1.0))
    client.publish("/clicked_point", behind)
    client.wait_for(FEEDBACK, lambda m: "behind the camera" in m.data, 30)
    hidden = PointStamped(
        header=Header(frame_id="world"), point=Point(x=0.75, y=0.375, z=3.0)
    )  # same pixel, 1 m behind the surface
    client.publish("/clicked_point", hidden)
    client.wait_for(FEEDBACK, lambda m: "hidden from this view" in m.data, 30)
    outside = PointStamped(header=Header(frame_id="world"), point=Point(x=5.0, y=0.0, z=1.0))
    client.publish("/clicked_point", outside)
    client.wait_for(FEEDBACK, lambda m: "outside the 320x240 image" in m.data, 30)
    result = client.call("/isar_teach/commit", Trigger, Trigger.Request())
    assert result.success, result.message
    names = {o.name for o in client.call("/isar_teach/list", ListObjects, ListObjects.Request()).objects}
    assert "clicked ball" in names


def test_rqt_pixel_clicks_with_a_box_teach(ros):
    client, camera = ros["client"], ros["camera"]
    camera.rgb = scene({"blue_dots": (100, 80, 80, 70)}, seed=2)[0]
    threading.Event().wait(0.5)
    client.wait_for_subscriber("/image_mouse_left")
    client.publish("/isar_teach/arm", String(data="blue box"))
    client.wait_for(FEEDBACK, lambda m: m.data.startswith("armed: click on 'blue box'"), 30)
    client.publish("/isar_teach/click_mode", String(data="box"))
    client.wait_for(FEEDBACK, lambda m: m.data.startswith("click mode: box"), 30)
    client.publish("/image_mouse_left", Point(x=100.0, y=80.0))
    client.wait_for(FEEDBACK, lambda m: m.data == "box corner 1 of 2", 30)
    client.publish("/image_mouse_left", Point(x=179.0, y=149.0))
    client.wait_for(FEEDBACK, lambda m: m.data == "box set", 30)
    client.publish("/image_mouse_left", Point(x=900.0, y=10.0))
    client.wait_for(FEEDBACK, lambda m: "outside the 320x240 image" in m.data, 30)
    client.publish("/isar_teach/click_mode", String(data="positive"))
    result = client.call("/isar_teach/commit", Trigger, Trigger.Request())
    assert result.success, result.message
    object_id = int(re.search(r"taught object (\d+)", result.message).group(1))
    found = instances_with(
        client, lambda m: any(i.object_id == object_id and i.name == "blue box" for i in m.instances)
    )
    assert found.instances


def test_forget_rename_and_a_runtime_threshold_reach_the_inference_node(ros):
    client, camera = ros["client"], ros["camera"]
    # An object no other test teaches: two taught copies of one object would compete for its pixels.
    teaching = numpy_to_image(scene({"green_checker": (60, 60, 70, 70)}, seed=11)[0], "rgb8")
    prompt = Prompt(has_box=True, box=RegionOfInterest(x_offset=60, y_offset=60, width=70, height=70))
    response = client.call(
        "/isar_teach/teach",
        TeachObject,
        TeachObject.Request(name="to rename", prompts=[prompt], image=teaching),
    )
    assert response.success, response.message
    object_id = response.object_id
    camera.rgb = scene({"green_checker": (200, 100, 70, 70)}, seed=5)[0]
    instances_with(client, lambda m: (object_id, "to rename") in ids_in(m))
    assert client.call(
        "/isar_teach/rename", RenameObject, RenameObject.Request(object_id=object_id, new_name="renamed")
    ).success
    instances_with(client, lambda m: (object_id, "renamed") in ids_in(m))
    set_parameter(client, "presence_offset", 50.0)  # nothing can be that sure
    instances_with(client, lambda m: object_id not in {i.object_id for i in m.instances})
    set_parameter(client, "presence_offset", 0.0)
    instances_with(client, lambda m: object_id in {i.object_id for i in m.instances})
    assert client.call("/isar_teach/forget", ForgetObject, ForgetObject.Request(object_id=object_id)).success
    instances_with(client, lambda m: object_id not in {i.object_id for i in m.instances})
    assert not client.call(
        "/isar_teach/forget", ForgetObject, ForgetObject.Request(object_id=object_id)
    ).success


def test_bad_teach_requests_get_a_reason_and_the_node_keeps_serving(ros):
    client, camera = ros["client"], ros["camera"]
    empty_box = Prompt(has_box=True, box=RegionOfInterest(x_offset=10, y_offset=10, width=0, height=5))
    response = client.call(
        "/isar_teach/teach",
        TeachObject,
        TeachObject.Request(name="x", prompts=[empty_box], image=numpy_to_image(camera.rgb, "rgb8")),
    )
    assert not response.success and "is empty" in response.message
    stale = Prompt(has_box=True, box=RegionOfInterest(x_offset=10, y_offset=10, width=30, height=30))
    stale.header.stamp.sec = 5  # never published
    response = client.call("/isar_teach/teach", TeachObject, TeachObject.Request(name="x", prompts=[stale]))
    assert not response.success and "no frame with stamp 5.000 in the buffer" in response.message
    response = client.call("/isar_teach/teach", TeachObject, TeachObject.Request(name="x"))
    assert not response.success and "no prompts" in response.message
    fresh = camera.stamps[-1]
    by_stamp = Prompt(has_box=True, box=RegionOfInterest(x_offset=20, y_offset=20, width=60, height=60))
    by_stamp.header.stamp = fresh
    response = client.call(
        "/isar_teach/teach", TeachObject, TeachObject.Request(name="from the buffer", prompts=[by_stamp])
    )
    assert response.success, response.message


@pytest.mark.parametrize("bad", ["wrong encoding", "empty", "short data"])
def test_bad_images_are_skipped_and_the_stream_goes_on(ros, bad):
    client, camera = ros["client"], ros["camera"]
    before = int(status(client)["bad_frames"])
    image = numpy_to_image(camera.rgb, "rgb8")
    if bad == "wrong encoding":
        image.encoding = "yuv422"
    elif bad == "empty":
        image = Image(encoding="rgb8")
    else:
        image.data = bytes(image.data)[:100]
    camera.image_override = image
    wait_until(lambda: int(status(client)["bad_frames"]) > before, 30, "the bad frames to be counted")
    camera.image_override = None
    instances_with(client, lambda m: True, timeout=30)  # good frames are answered again


def test_image_size_changed_mid_stream(ros):
    client, camera = ros["client"], ros["camera"]
    camera.rgb = np.ascontiguousarray(
        np.repeat(np.repeat(scene({"red_stripes": MOVED}, seed=5)[0], 2, 0), 2, 1)
    )  # 640x480
    found = instances_with(client, lambda m: m.label_image.width == 640 and m.label_image.height == 480)
    camera.rgb = scene({}, seed=1)[0]
    instances_with(client, lambda m: m.label_image.width == 320)
    assert found.label_image.encoding == "mono16"


def test_a_late_inference_node_and_a_restarted_teach_node_get_every_object_back(ros):
    client, graph = ros["client"], ros["graph"]
    assert teach_red(client, "kept over restarts").success
    listed = client.call("/isar_teach/list", ListObjects, ListObjects.Request())
    assert "kept over restarts" in {o.name for o in listed.objects}
    late = graph.start(
        NodeSpec(
            "inference_node",
            {"image_reliability": "reliable", "status_period_s": 0.2},
            remappings={"__node": "isar_inference_late"},
        ),
        "late",
    )
    client.listen("/isar_inference_late/status", DiagnosticStatus)
    client.wait_for(
        "/isar_inference_late/status",
        lambda m: {kv.key: kv.value for kv in m.values}["memory_version"] == str(listed.memory_version),
        60,
    )
    late.stop()
    ros["teach"].stop()  # saves on shutdown
    ros["teach"] = graph.start(NodeSpec("teach_node", {"memory_dir": str(ros["memory_dir"])}), "teach_again")
    again = client.call_fresh_node("/isar_teach/list", ListObjects, ListObjects.Request())
    assert [(o.object_id, o.name) for o in again.objects] == [(o.object_id, o.name) for o in listed.objects]
    assert again.memory_version == listed.memory_version


# ---- a new user's first hour (issue 12) -------------------------------------------------------------
def test_a_name_that_exists_gets_more_views_and_renaming_onto_it_is_refused(ros):
    client = ros["client"]
    first, again = teach_red(client, name="mug twice"), teach_red(client, name="mug twice")
    assert first.success and again.success and again.object_id == first.object_id, again.message
    listed = client.call("/isar_teach/list", ListObjects, ListObjects.Request()).objects
    assert [o.num_exemplars for o in listed if o.name == "mug twice"] == [2]
    other = teach_red(client, name="another mug")
    refused = client.call(
        "/isar_teach/rename",
        RenameObject,
        RenameObject.Request(object_id=other.object_id, new_name="mug twice"),
    )
    assert not refused.success and "is taken by object" in refused.message
    for object_id in (first.object_id, other.object_id):
        assert client.call(
            "/isar_teach/forget", ForgetObject, ForgetObject.Request(object_id=object_id)
        ).success


def test_start_only_parameters_are_read_only_and_run_time_ones_are_checked_and_applied(ros):
    client = ros["client"]
    assert not try_parameter(client, "memory_dir", "/tmp/elsewhere", node="/isar_teach").successful
    assert not try_parameter(client, "buffer_size", 5, node="/isar_teach").successful
    assert not try_parameter(client, "image_reliability", "best_effort").successful
    wrong = try_parameter(client, "matcher", "svn")
    assert not wrong.successful and "not one of svm, prototype" in wrong.reason
    assert not try_parameter(client, "presence_offset", 1000.0).successful  # outside its range
    set_parameter(client, "presence_offset", 1)  # an int for a float parameter is fine
    set_parameter(client, "presence_offset", 0.0)
    set_parameter(client, "publish_overlay", False)  # used to answer "successful" and do nothing
    seen = len(client.messages("/isar_inference/overlay"))
    instances_with(client, lambda m: True)
    instances_with(client, lambda m: True)
    settled = len(client.messages("/isar_inference/overlay"))
    instances_with(client, lambda m: True)
    instances_with(client, lambda m: True)
    assert len(client.messages("/isar_inference/overlay")) == settled, (seen, settled)
    set_parameter(client, "publish_overlay", True)
    client.wait_for("/isar_inference/overlay", after=settled, timeout=30)


def test_camera_info_is_republished_with_the_outputs_stamp(ros):
    client = ros["client"]
    answer = instances_with(client, lambda m: True)
    info = client.wait_for(
        "/isar_inference/camera_info", lambda m: m.header.stamp == answer.header.stamp, timeout=30
    )
    assert info.k[0] == 160.0 and (info.width, info.height) == (
        answer.label_image.width,
        answer.label_image.height,
    )


def test_status_says_error_with_the_reason_when_nothing_comes_out_and_reaches_diagnostics(ros):
    client, camera = ros["client"], ros["camera"]
    image = numpy_to_image(camera.rgb, "rgb8")
    image.encoding = "yuv422"
    camera.image_override = image

    def error_status():
        messages = client.messages("/isar_inference/status")
        return messages and messages[-1].level == DiagnosticStatus.ERROR and "yuv422" in messages[-1].message

    wait_until(error_status, 30, "an ERROR status naming the encoding")
    array = client.wait_for(
        "/diagnostics", lambda m: m.status and "yuv422" in m.status[0].message, timeout=30
    )
    assert array.status[0].name == "/isar_inference" and "rgb8" in array.status[0].message  # what is accepted
    camera.image_override = None
    ok = client.wait_for(
        "/isar_inference/status",
        lambda m: m.level == DiagnosticStatus.OK,
        timeout=30,
        after=len(client.messages("/isar_inference/status")),
    )
    assert ok.message == "running"


def test_grey_cameras_are_served(ros):
    """mono8 used to be accepted and never found anything; now it is converted (with a warning once)."""
    client, camera = ros["client"], ros["camera"]
    camera.image_override = numpy_to_image(camera.rgb[..., 1].copy(), "mono8")
    before = status(client)
    wait_until(
        lambda: int(status(client)["frames_out"]) > int(before["frames_out"]) + 2, 30, "grey frames answered"
    )
    answered = status(client)
    assert answered["bad_frames"] == before["bad_frames"]  # no grey frame was refused
    # the status splits each frame's time: the backbone, and the node's own work beside it
    assert float(answered["backbone_ms_p50"]) > 0 and float(answered["outside_backbone_ms_p50"]) > 0
    camera.image_override = None
    log = ros["inference"].log_path
    wait_until(
        lambda: "mono8 (grey) images are converted to RGB" in log.read_text(), 10, "the warning in the log"
    )
    assert log.read_text().count("images are converted to RGB") == 1  # once, not per frame


def test_teach_input_that_cannot_be_meant_is_refused_with_the_reason(ros):
    client, camera = ros["client"], ros["camera"]
    height, width = camera.rgb.shape[:2]
    image = numpy_to_image(camera.rgb, "rgb8")
    overhanging = Prompt(
        has_box=True, box=RegionOfInterest(x_offset=width - 20, y_offset=10, width=60, height=40)
    )
    response = client.call(
        "/isar_teach/teach", TeachObject, TeachObject.Request(name="x", prompts=[overhanging], image=image)
    )
    assert not response.success and "reaches outside" in response.message
    beside = Prompt(has_box=True, box=RegionOfInterest(x_offset=20, y_offset=20, width=40, height=40))
    beside.points, beside.labels = [Point32(x=200.0, y=200.0)], [1]
    response = client.call(
        "/isar_teach/teach", TeachObject, TeachObject.Request(name="x", prompts=[beside], image=image)
    )
    assert not response.success and "lies outside the box" in response.message
    red = teach_red(client, name="armed mug")
    client.publish("/isar_teach/arm", String(data="id:abc"))
    client.wait_for(FEEDBACK, lambda m: "is not 'id:<number>'" in m.data, 30)
    client.publish("/isar_teach/arm", String(data="id:999"))
    client.wait_for(FEEDBACK, lambda m: m.data.startswith("arm refused: no object with id 999"), 30)
    client.publish("/isar_teach/click_mode", String(data="box"))
    client.wait_for(FEEDBACK, lambda m: m.data.startswith("click mode: box"), 30)
    seen = len(client.messages(FEEDBACK))
    client.publish("/isar_teach/arm", String(data=f"id:{red.object_id}"))
    armed = client.wait_for(FEEDBACK, lambda m: m.data.startswith("armed:"), 30, after=seen)
    assert (
        "'armed mug'" in armed.data and "(mode positive)" in armed.data
    )  # every arm starts in the default mode
    client.call("/isar_teach/cancel", Trigger, Trigger.Request())
    assert client.call(
        "/isar_teach/forget", ForgetObject, ForgetObject.Request(object_id=red.object_id)
    ).success


# ---- 3-D (issue 16) ------------------------------------------------------------------------------------
def test_depth_camera_info_and_pose_with_the_image_give_each_instance_its_3d_position(ros):
    """The camera sends depth (a plane 2 m away), camera_info (fx = fy = 160, principal point (160, 120)) and
    an identity pose in `world`, all with the image's stamp: the red object, taught at pixels x 30-99,
    y 40-99, lies at about x = (65 - 160) * 2 / 160, y = (70 - 120) * 2 / 160, z = 2 m."""
    client, camera = ros["client"], ros["camera"]
    for leftover in client.call("/isar_teach/list", ListObjects, ListObjects.Request()).objects:
        # objects earlier tests taught from the same image would compete for the same pixels
        client.call("/isar_teach/forget", ForgetObject, ForgetObject.Request(object_id=leftover.object_id))
    taught = teach_red(client, name="located mug")
    assert taught.success, taught.message
    camera.rgb, _ = scene({"red_stripes": RED}, seed=5)  # the object in view where it was taught

    def located(m):
        return any(i.object_id == taught.object_id and i.camera.valid and i.world.valid for i in m.instances)

    msg = instances_with(client, located)
    instance = next(i for i in msg.instances if i.object_id == taught.object_id)
    c, w = instance.camera, instance.world
    assert c.frame_id == "camera_optical" and w.frame_id == "world"
    assert abs(c.centroid.z - 2.0) < 0.01 and abs(c.extent.z) < 0.01  # a flat plane
    assert abs(c.centroid.x - (65 - 160) * 2 / 160) < 0.15 and abs(c.centroid.y - (70 - 120) * 2 / 160) < 0.15
    assert 0.5 < c.extent.x < 1.0 and c.depth_pixels > 1000  # about 70 px x 2 m / 160 px
    assert (w.centroid.x, w.centroid.y, w.centroid.z) == pytest.approx(
        (c.centroid.x, c.centroid.y, c.centroid.z)
    )
    array = client.wait_for(
        "/isar_inference/markers", lambda m: any(k.id == 2 * taught.object_id for k in m.markers), timeout=30
    )
    assert array.markers[0].action == Marker.DELETEALL
    box = next(k for k in array.markers if k.id == 2 * taught.object_id)
    label = next(k for k in array.markers if k.id == 2 * taught.object_id + 1)
    assert (
        box.type == Marker.CUBE and box.header.frame_id == "world" and abs(box.pose.position.z - 2.0) < 0.01
    )
    assert label.type == Marker.TEXT_VIEW_FACING and label.text.startswith("located mug")
    assert float(status(client)["locate_ms_p50"]) >= 0.0
    # the pose prior on (run time; depth trimming is on by default): found and located as before
    set_parameter(client, "pose_prior", True)
    after = len(client.messages("/isar_inference/instances"))
    for _ in range(3):  # the first frames put it on the stream's map; the next ones expect it there
        msg = client.wait_for("/isar_inference/instances", located, timeout=30, after=after)
        after = len(client.messages("/isar_inference/instances"))
    again = next(i for i in msg.instances if i.object_id == taught.object_id).world.centroid
    assert (again.x, again.y, again.z) == pytest.approx((w.centroid.x, w.centroid.y, w.centroid.z), abs=0.05)
    set_parameter(client, "pose_prior", False)
    # depth of another size than the image (not registered to it): found as before, without 3-D
    camera.depth_shape = (120, 160)
    try:
        after = len(client.messages("/isar_inference/instances"))
        client.wait_for(
            "/isar_inference/instances",
            lambda m: any(i.object_id == taught.object_id and not i.camera.valid for i in m.instances),
            timeout=30,
            after=after,
        )
    finally:
        camera.depth_shape = None

    # the object map: every inference node sends what it located; the teach node answers ~/where
    def seen():
        answer = client.call("/isar_teach/where", WhereIs, WhereIs.Request(name="located mug"))
        return answer if answer.found else None

    wait_until(seen, 30, "the teach node's map to hold the object")
    answer = seen()
    assert (
        answer.frame_id == "world"
        and answer.entry.object_id == taught.object_id
        and answer.entry.observations >= 1
    )
    assert (answer.entry.position.x, answer.entry.position.z) == pytest.approx((c.centroid.x, 2.0), abs=0.05)
    latched = client.wait_for(
        "/object_map", lambda m: any(e.object_id == taught.object_id for e in m.objects), 30
    )
    assert latched.header.frame_id == "world"
    assert client.call(
        "/isar_teach/forget", ForgetObject, ForgetObject.Request(object_id=taught.object_id)
    ).success
    gone = client.call("/isar_teach/where", WhereIs, WhereIs.Request(object_id=taught.object_id))
    assert not gone.found and f"no object with id {taught.object_id}" in gone.message
    client.wait_for("/object_map", lambda m: all(e.object_id != taught.object_id for e in m.objects), 30)
