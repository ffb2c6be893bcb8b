"""Peer processes for the DDS exchange test: one publishes, the other receives and checks.

python image_exchange.py publish      # publishes a 640x480 rgb8 Image and an InstanceSegmentation at 10 Hz
python image_exchange.py receive      # waits for one of each, checks every pixel and field, exits 0 or 1
"""

import sys

import numpy as np
import rclpy
from isar_ros_msgs.msg import Instance, InstanceSegmentation
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, RegionOfInterest

from isar_ros.msgio.image_codec import image_to_numpy, numpy_to_image

WIDTH, HEIGHT = 640, 480
STAMP = (1234, 567_000_000)
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def expected_rgb() -> np.ndarray:
    y, x, c = np.mgrid[0:HEIGHT, 0:WIDTH, 0:3]
    return ((x * 3 + y * 7 + c * 101) % 256).astype(np.uint8)


def expected_labels() -> np.ndarray:
    labels = np.zeros((HEIGHT, WIDTH), np.uint16)
    labels[100:200, 50:150] = 7
    labels[300:480, 400:640] = 1661
    return labels


def make_segmentation(header) -> InstanceSegmentation:
    msg = InstanceSegmentation(header=header, memory_version=42)
    msg.label_image = numpy_to_image(expected_labels(), "mono16", header=header)
    for object_id, name, (x, y, w, h) in [
        (7, "mug", (50, 100, 100, 100)),
        (1661, "tomato soup", (400, 300, 240, 180)),
    ]:
        box = RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
        msg.instances.append(Instance(object_id=object_id, name=name, score=0.5, box=box, area=w * h))
    return msg


class Publisher(Node):
    def __init__(self):
        super().__init__("exchange_publisher")
        self.image_pub = self.create_publisher(Image, "camera/image", qos_profile_sensor_data)
        self.seg_pub = self.create_publisher(InstanceSegmentation, "instances", RELIABLE)
        self.image = numpy_to_image(expected_rgb(), "rgb8")
        self.image.header.stamp.sec, self.image.header.stamp.nanosec = STAMP
        self.image.header.frame_id = "camera_optical"
        self.segmentation = make_segmentation(self.image.header)
        self.create_timer(0.1, self.publish)

    def publish(self):
        self.image_pub.publish(self.image)
        self.seg_pub.publish(self.segmentation)


class Receiver(Node):
    def __init__(self):
        super().__init__("exchange_receiver")
        self.image = None
        self.segmentation = None
        self.create_subscription(Image, "camera/image", self.on_image, qos_profile_sensor_data)
        self.create_subscription(InstanceSegmentation, "instances", self.on_segmentation, RELIABLE)

    def on_image(self, msg):
        self.image = self.image or msg

    def on_segmentation(self, msg):
        self.segmentation = self.segmentation or msg

    @property
    def done(self):
        return self.image is not None and self.segmentation is not None


def check(image: Image, segmentation: InstanceSegmentation) -> list[str]:
    problems = []
    if (image.width, image.height, image.encoding) != (WIDTH, HEIGHT, "rgb8"):
        problems.append(f"image is {image.width}x{image.height} {image.encoding}")
    elif not np.array_equal(image_to_numpy(image), expected_rgb()):
        problems.append("image pixels differ")
    if (image.header.stamp.sec, image.header.stamp.nanosec, image.header.frame_id) != (
        *STAMP,
        "camera_optical",
    ):
        problems.append(f"image header is {image.header}")
    if segmentation.header != image.header:
        problems.append("segmentation header differs from the image's")
    if not np.array_equal(image_to_numpy(segmentation.label_image), expected_labels()):
        problems.append("label image differs")
    got = [
        (i.object_id, i.name, i.box.x_offset, i.box.y_offset, i.box.width, i.box.height, i.area)
        for i in segmentation.instances
    ]
    if got != [(7, "mug", 50, 100, 100, 100, 10000), (1661, "tomato soup", 400, 300, 240, 180, 43200)]:
        problems.append(f"instances are {got}")
    if segmentation.memory_version != 42:
        problems.append(f"memory_version is {segmentation.memory_version}")
    return problems


def main(role: str) -> int:
    rclpy.init()
    try:
        if role == "publish":
            rclpy.spin(Publisher())
            return 0
        receiver = Receiver()
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(receiver)
        executor.spin_until_future_complete(_until(receiver), timeout_sec=60.0)
        if not receiver.done:
            print("receiver: timed out waiting for messages", flush=True)
            return 1
        problems = check(receiver.image, receiver.segmentation)
        print("receiver: " + ("; ".join(problems) if problems else "all pixels and fields match"), flush=True)
        return 1 if problems else 0
    except KeyboardInterrupt:
        return 0
    finally:
        if rclpy.ok():
            rclpy.shutdown()


def _until(receiver: Receiver):
    future = rclpy.task.Future()

    def poll():
        if receiver.done and not future.done():
            future.set_result(True)

    receiver.create_timer(0.02, poll)
    return future


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
