"""numpy <-> ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage``, with cv_bridge's semantics.

ROS 2's ``cv_bridge`` cannot be installed from pip, so this is the project's own small version:

* ``image_to_numpy(msg)`` returns an ``H x W`` (one channel) or ``H x W x C`` array whose dtype
  follows the encoding, honouring row padding in ``step`` and ``is_bigendian``; with
  ``desired_encoding`` it also converts between the 8-bit colour encodings, as cv_bridge does.
* ``numpy_to_image(array, encoding)`` builds a tightly packed message in native byte order.
* ``compressed_to_numpy`` / ``numpy_to_compressed`` use OpenCV's codecs (JPEG or PNG; PNG keeps
  16-bit depth), with the ``format`` string written the way ``image_transport`` writes it.

Anything unsupported or inconsistent raises :class:`ImageConversionError` naming the problem.
The decoding side only reads attributes, so it works on rclpy and rosbags messages alike.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from isar_ros.errors import InvalidInput


class ImageConversionError(InvalidInput):
    """An image message that cannot be converted; the message says what is wrong."""


@dataclass(frozen=True)
class Encoding:
    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(np.dtype(np.uint8), 3),
    "bgr8": Encoding(np.dtype(np.uint8), 3),
    "rgba8": Encoding(np.dtype(np.uint8), 4),
    "bgra8": Encoding(np.dtype(np.uint8), 4),
    "mono8": Encoding(np.dtype(np.uint8), 1),
    "mono16": Encoding(np.dtype(np.uint16), 1),
    "16UC1": Encoding(np.dtype(np.uint16), 1),
    "32FC1": Encoding(np.dtype(np.float32), 1),
}

# cv2.cvtColor codes between the 8-bit colour encodings (cv_bridge's colour conversions).
_COLOR_CONVERSIONS: dict[tuple[str, str], int] = {
    ("rgb8", "bgr8"): cv2.COLOR_RGB2BGR,
    ("bgr8", "rgb8"): cv2.COLOR_BGR2RGB,
    ("rgba8", "bgra8"): cv2.COLOR_RGBA2BGRA,
    ("bgra8", "rgba8"): cv2.COLOR_BGRA2RGBA,
    ("rgb8", "rgba8"): cv2.COLOR_RGB2RGBA,
    ("rgb8", "bgra8"): cv2.COLOR_RGB2BGRA,
    ("bgr8", "rgba8"): cv2.COLOR_BGR2RGBA,
    ("bgr8", "bgra8"): cv2.COLOR_BGR2BGRA,
    ("rgba8", "rgb8"): cv2.COLOR_RGBA2RGB,
    ("rgba8", "bgr8"): cv2.COLOR_RGBA2BGR,
    ("bgra8", "rgb8"): cv2.COLOR_BGRA2RGB,
    ("bgra8", "bgr8"): cv2.COLOR_BGRA2BGR,
    ("rgb8", "mono8"): cv2.COLOR_RGB2GRAY,
    ("bgr8", "mono8"): cv2.COLOR_BGR2GRAY,
    ("rgba8", "mono8"): cv2.COLOR_RGBA2GRAY,
    ("bgra8", "mono8"): cv2.COLOR_BGRA2GRAY,
    ("mono8", "rgb8"): cv2.COLOR_GRAY2RGB,
    ("mono8", "bgr8"): cv2.COLOR_GRAY2BGR,
    ("mono8", "rgba8"): cv2.COLOR_GRAY2RGBA,
    ("mono8", "bgra8"): cv2.COLOR_GRAY2BGRA,
}
_SAME_LAYOUT = {frozenset({"mono16", "16UC1"})}

NATIVE_BIGENDIAN = int(sys.byteorder == "big")


def lookup_encoding(name: str) -> Encoding:
    try:
        return ENCODINGS[name]
    except KeyError:
        raise ImageConversionError(
            f"unsupported image encoding {name!r}; supported: {', '.join(ENCODINGS)}"
        ) from None


def convert_encoding(array: np.ndarray, source: str, desired: str) -> np.ndarray:
    """Convert a decoded image between encodings (``passthrough`` keeps it as it is)."""
    if desired in ("passthrough", source) or frozenset({source, desired}) in _SAME_LAYOUT:
        return array
    lookup_encoding(desired)
    code = _COLOR_CONVERSIONS.get((source, desired))
    if code is None:
        raise ImageConversionError(f"cannot convert an image from {source!r} to {desired!r}")
    return cv2.cvtColor(array, code)


def image_to_numpy(msg: Any, desired_encoding: str = "passthrough") -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into a new, native-byte-order array.

    Returns ``H x W`` for one-channel encodings, ``H x W x C`` otherwise; dtype from the encoding.
    """
    encoding = lookup_encoding(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"image is empty ({width}x{height}); the camera sent no pixels")
    row_bytes = width * encoding.bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"{msg.encoding} image {width}x{height}: step {step} is smaller than one row "
            f"({width} px x {encoding.bytes_per_pixel} bytes = {row_bytes} bytes)"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * height:
        raise ImageConversionError(
            f"{msg.encoding} image {width}x{height}: data holds {data.size} bytes, "
            f"but step x height = {step} x {height} = {step * height} bytes"
        )
    dtype = encoding.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).astype(encoding.dtype, copy=False)
    shape = (height, width) if encoding.channels == 1 else (height, width, encoding.channels)
    array = pixels.reshape(shape)
    if not array.flags.owndata:
        array = array.copy()
    return convert_encoding(array, msg.encoding, desired_encoding)


CAMERA_COLOUR = ("rgb8", "bgr8", "rgba8", "bgra8")
CAMERA_MONO = ("mono8", "mono16", "16UC1")


def camera_rgb(msg: Any) -> tuple[np.ndarray, str]:
    """A camera image as H x W x 3 uint8 RGB, and a note ("" or what was converted, for a one-time warning).

    Accepted: rgb8, bgr8, rgba8, bgra8 (converted exactly), mono8, mono16 / 16UC1 (grey: the colour
    cues of the offline backbone are lost, so objects are found less reliably). Anything else
    (yuv422, bayer_*, 32FC1 depth, ...) raises :class:`ImageConversionError` naming what is accepted.
    """
    if msg.encoding not in CAMERA_COLOUR + CAMERA_MONO:
        raise ImageConversionError(
            f"camera images must be one of {', '.join(CAMERA_COLOUR + CAMERA_MONO)}, not {msg.encoding!r}; "
            "convert them first (image_proc's debayer, or the driver's colour format setting)"
        )
    array = image_to_numpy(msg)
    if msg.encoding in CAMERA_COLOUR:
        return convert_encoding(array, msg.encoding, "rgb8"), ""
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    return cv2.cvtColor(array, cv2.COLOR_GRAY2RGB), (
        f"{msg.encoding} (grey) images are converted to RGB; without colour, objects are found less "
        "reliably - "
        "publish rgb8 or bgr8 if the camera can"
    )


def check_array(array: np.ndarray, encoding: str) -> Encoding:
    """Check that ``array`` has the dtype and channel count ``encoding`` needs."""
    spec = lookup_encoding(encoding)
    channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else -1)
    if array.ndim not in (2, 3) or channels != spec.channels:
        raise ImageConversionError(
            f"array of shape {array.shape} does not fit encoding {encoding!r} "
            f"({spec.channels} channel{'s' if spec.channels > 1 else ''})"
        )
    if array.dtype != spec.dtype:
        raise ImageConversionError(
            f"array dtype {array.dtype} does not fit encoding {encoding!r} ({spec.dtype})"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageConversionError(f"array of shape {array.shape} is an empty image")
    return spec


def numpy_to_image(array: np.ndarray, encoding: str, header: Any = None, msg_type: Any = None) -> Any:
    """Build a tightly packed ``sensor_msgs/Image`` (native byte order) from ``array``.

    ``msg_type`` defaults to rclpy's ``sensor_msgs.msg.Image``; any class with the same fields works.
    """
    spec = check_array(array, encoding)
    if msg_type is None:
        from sensor_msgs.msg import Image

        msg_type = Image
    msg = msg_type()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = NATIVE_BIGENDIAN
    msg.step = msg.width * spec.bytes_per_pixel
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def compressed_to_numpy(msg: Any, desired_encoding: str = "bgr8") -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG).

    OpenCV decodes colour to BGR; ``desired_encoding`` converts from there ("passthrough" keeps
    what the codec gives: bgr8, mono8, or 16-bit mono for 16-bit PNGs).
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError(f"compressed image ({msg.format!r}) has no data")
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageConversionError(
            f"compressed image ({msg.format!r}, {data.size} bytes) could not be decoded"
        )
    if array.ndim == 2:
        source = "mono16" if array.dtype == np.uint16 else "mono8"
    else:
        source = "bgra8" if array.shape[2] == 4 else "bgr8"
    return convert_encoding(array, source, desired_encoding)


def numpy_to_compressed(
    array: np.ndarray, encoding: str, image_format: str = "jpeg", header: Any = None, msg_type: Any = None
) -> Any:
    """Encode ``array`` (in ``encoding``) as a ``sensor_msgs/CompressedImage``.

    ``image_format`` is "jpeg" or "png"; 16-bit images need "png". The message's ``format`` reads
    like image_transport's, e.g. ``"rgb8; jpeg compressed bgr8"``.
    """
    spec = check_array(array, encoding)
    if image_format not in ("jpeg", "png"):
        raise ImageConversionError(f"unsupported compressed format {image_format!r}; use 'jpeg' or 'png'")
    if spec.dtype != np.uint8 and image_format != "png":
        raise ImageConversionError(f"{encoding} images can only be compressed as png, not {image_format}")
    if spec.dtype == np.float32:
        raise ImageConversionError("32FC1 images cannot be compressed losslessly; send them raw")
    if spec.channels == 1:
        coded, coded_encoding = array, ("mono8" if spec.dtype == np.uint8 else "mono16")
    elif spec.channels == 3:
        coded, coded_encoding = convert_encoding(array, encoding, "bgr8"), "bgr8"
    else:
        coded, coded_encoding = convert_encoding(array, encoding, "bgra8"), "bgra8"
    ok, buffer = cv2.imencode(".jpg" if image_format == "jpeg" else ".png", coded)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {encoding} image as {image_format}")
    if msg_type is None:
        from sensor_msgs.msg import CompressedImage

        msg_type = CompressedImage
    msg = msg_type()
    if header is not None:
        msg.header = header
    msg.format = f"{encoding}; {image_format} compressed {coded_encoding}"
    msg.data = buffer.tobytes()
    return msg


def depth_to_metres(msg: Any) -> np.ndarray:
    """A depth image (16UC1/mono16 in millimetres, or 32FC1 in metres, as ROS depth drivers publish)
    -> H x W float32 metres, NaN where there is no reading (0 or non-finite)."""
    depth = image_to_numpy(msg)
    if msg.encoding in ("16UC1", "mono16"):
        metres = depth.astype(np.float32) / 1000.0
        metres[depth == 0] = np.nan
        return metres
    if msg.encoding == "32FC1":
        metres = depth.astype(np.float32, copy=True)
        metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
        return metres
    raise ImageConversionError(f"depth images must be 16UC1/mono16 (mm) or 32FC1 (m), not {msg.encoding!r}")
