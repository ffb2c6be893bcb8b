"""numpy <-> sensor_msgs/Image and CompressedImage, with cv_bridge's semantics."""

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from isar_ros.msgio.image_codec import (
    ENCODINGS,
    ImageConversionError,
    compressed_to_numpy,
    image_to_numpy,
    numpy_to_compressed,
    numpy_to_image,
)

RNG = np.random.default_rng(0)


def random_image(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    spec = ENCODINGS[encoding]
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    if spec.dtype == np.float32:
        return RNG.normal(size=shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(spec.dtype).max, size=shape, endpoint=True).astype(spec.dtype)


def padded_message(array: np.ndarray, encoding: str, padding: int, bigendian: bool = False) -> Image:
    """A message built by hand, the way a camera driver with row alignment would send it."""
    dtype = array.dtype.newbyteorder(">" if bigendian else "<")
    rows = array.astype(dtype).reshape(array.shape[0], -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((rows.shape[0], padding), 0xAB, np.uint8)], axis=1)
    return Image(
        height=array.shape[0],
        width=array.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1],
        data=rows.tobytes(),
    )


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    array = random_image(encoding)
    msg = numpy_to_image(array, encoding)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (5, 7, encoding, 0)
    assert msg.step == 7 * ENCODINGS[encoding].bytes_per_pixel
    back = image_to_numpy(msg)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_padded_step_is_skipped(encoding):
    array = random_image(encoding)
    msg = padded_message(array, encoding, padding=5)
    np.testing.assert_array_equal(image_to_numpy(msg), array)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_big_endian_data_is_swapped_to_native(encoding):
    array = random_image(encoding)
    msg = padded_message(array, encoding, padding=2, bigendian=True)
    back = image_to_numpy(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_colour_conversion_like_cv_bridge():
    rgb = random_image("rgb8")
    msg = numpy_to_image(rgb, "rgb8")
    np.testing.assert_array_equal(image_to_numpy(msg, "bgr8"), rgb[..., ::-1])
    rgba = image_to_numpy(msg, "rgba8")
    assert rgba.shape == (5, 7, 4) and (rgba[..., 3] == 255).all()
    with pytest.raises(ImageConversionError, match="cannot convert an image from 'rgb8' to '32FC1'"):
        image_to_numpy(msg, "32FC1")


def test_wrong_step_is_named():
    msg = numpy_to_image(random_image("rgb8"), "rgb8")
    msg.step = 20
    with pytest.raises(
        ImageConversionError, match=r"step 20 is smaller than one row \(7 px x 3 bytes = 21 bytes\)"
    ):
        image_to_numpy(msg)


def test_short_data_is_named():
    msg = numpy_to_image(random_image("mono16"), "mono16")
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(
        ImageConversionError, match=r"data holds 69 bytes, but step x height = 14 x 5 = 70 bytes"
    ):
        image_to_numpy(msg)


def test_unknown_encoding_is_named():
    msg = Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8))
    with pytest.raises(ImageConversionError, match="unsupported image encoding 'yuv422'; supported: rgb8"):
        image_to_numpy(msg)


def test_empty_image_is_refused():
    with pytest.raises(ImageConversionError, match="image is empty"):
        image_to_numpy(Image(encoding="rgb8"))


def test_array_that_does_not_fit_its_encoding():
    with pytest.raises(ImageConversionError, match=r"does not fit encoding 'rgb8' \(3 channels\)"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="dtype float64 does not fit encoding 'mono16'"):
        numpy_to_image(np.zeros((4, 4)), "mono16")


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1"])
def test_compressed_png_round_trip_is_lossless(encoding):
    array = random_image(encoding, 16, 20)
    msg = numpy_to_compressed(array, encoding, "png")
    assert isinstance(msg, CompressedImage) and msg.format.startswith(f"{encoding}; png compressed")
    desired = "mono16" if encoding == "16UC1" else encoding
    np.testing.assert_array_equal(compressed_to_numpy(msg, desired), array)


def test_compressed_jpeg_is_close_and_in_the_asked_channel_order():
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    msg = numpy_to_compressed(rgb, "rgb8", "jpeg")
    assert msg.format == "rgb8; jpeg compressed bgr8"
    back = compressed_to_numpy(msg, "rgb8")
    assert np.abs(back.astype(int) - rgb).mean() < 3


def test_compressed_errors():
    with pytest.raises(ImageConversionError, match="can only be compressed as png"):
        numpy_to_compressed(random_image("mono16"), "mono16", "jpeg")
    with pytest.raises(ImageConversionError, match="could not be decoded"):
        compressed_to_numpy(CompressedImage(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(ImageConversionError, match="has no data"):
        compressed_to_numpy(CompressedImage(format="jpeg"))
