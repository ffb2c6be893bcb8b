"""The browser teach panel against real teach, inference and web nodes over DDS, in headless Chromium.

The browser is Debian's ``chromium`` driven by Playwright (``make setup`` installs both where it may); the
browser test is skipped, saying why, only where no chromium can be found. The HTTP checks run without
a browser. ``ISAR_PANEL_SCREENSHOTS=docs/images`` also writes the screenshots of docs/operator.md there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import rclpy
from isar_ros_msgs.msg import InstanceSegmentation
from isar_ros_msgs.srv import ListObjects
from processes import Process, python
from ros_client import RosClient, wait_until
from test_perception import scene
from test_ros_nodes import Camera

from isar_ros.ros.launcher import Graph, NodeSpec

pytestmark = [pytest.mark.ros, pytest.mark.slow]

MUG = (90, 120, 140, 120)  # x, y, w, h of the object taught from the page, in the 640x480 camera image
CAMERA_OBJECTS = {"red_stripes": MUG, "blue_dots": (400, 260, 150, 130), "green_checker": (420, 60, 110, 90)}
TOKEN = "s3cret-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    rclpy.init()
    client = RosClient()
    client.listen("/isar_inference/instances", InstanceSegmentation)
    camera = Camera(client, scene(CAMERA_OBJECTS, seed=5, size=(480, 640))[0])
    graph = Graph(log_dir=tmp_path_factory.mktemp("logs"))
    try:
        graph.start(NodeSpec("teach_node", {"memory_dir": str(tmp_path_factory.mktemp("memory"))}), "teach")
        graph.start(NodeSpec("inference_node", {"image_reliability": "reliable"}), "inference")
        port, token_port = free_port(), free_port()
        graph.start(NodeSpec("web_node", {"port": port}), "web")
        graph.start(
            NodeSpec(
                "web_node",
                {"port": token_port, "token": TOKEN, "teach_node": "/isar_teach"},
                namespace="guarded",
            ),
            "web with token",
        )
        client.call_fresh_node("/isar_teach/list", ListObjects, ListObjects.Request())
        url = f"http://127.0.0.1:{port}/"

        def first_image() -> bool:
            dead = graph.failed()
            assert dead is None, f"{dead.name} exited: {dead.log_path.read_text()[-2000:]}"
            return http(url + "view.jpg")[0] == 200

        wait_until(first_image, 60, "the panel's first camera image")
        yield {"url": url, "token_url": f"http://127.0.0.1:{token_port}/", "client": client, "graph": graph}
    finally:  # also when starting failed: no node outlives the test
        camera.stop()
        graph.stop()
        client.close()
        rclpy.shutdown()


def http(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def post(url: str, value) -> tuple[int, dict]:
    status, data = http(url, json.dumps(value).encode(), {"Content-Type": "application/json"})
    return status, json.loads(data)


def object_names(client) -> set[str]:
    return {o.name for o in client.call("/isar_teach/list", ListObjects, ListObjects.Request()).objects}


def test_bad_requests_get_a_message_and_the_panel_keeps_serving(panel):
    url = panel["url"]
    status, body = http(url + "api/preview", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and b"not JSON" in body
    status, answer = post(url + "api/preview", {"frame": "999", "prompts": {"points": [[1, 1, 1]]}})
    assert status == 400 and "no longer kept" in answer["message"]
    # The view may show the inference node's overlay before the panel's own camera subscription has an
    # image (seen on a loaded machine): until then a freeze is refused with a message, then it works.
    frozen: list[dict] = []
    wait_until(lambda: frozen.append(post(url + "api/freeze", {})[1]) or frozen[-1]["ok"], 60, "a freeze")
    frame = frozen[-1]
    assert (frame["width"], frame["height"]) == (640, 480)
    assert all("no usable camera image yet" in f["message"] for f in frozen[:-1])
    status, answer = post(
        url + "api/preview", {"frame": frame["frame"], "prompts": {"points": [[900, 5, 1]]}}
    )
    assert status == 400 and "outside" in answer["message"], answer
    version = panel["client"].call("/isar_teach/list", ListObjects, ListObjects.Request()).memory_version
    status, answer = post(
        url + "api/preview", {"frame": frame["frame"], "prompts": {"box": [90, 120, 229, 239]}}
    )
    assert status == 200 and answer["ok"] and answer["preview"].startswith("data:image/jpeg;base64,")
    after = panel["client"].call("/isar_teach/list", ListObjects, ListObjects.Request())
    assert after.memory_version == version and not after.objects  # a preview changes nothing
    status, answer = post(url + "api/teach", {"frame": frame["frame"], "prompts": {"box": [1, 2, 50, 60]}})
    assert status == 400 and "name" in answer["message"]
    status, answer = post(url + "api/objects/77/forget", {})
    assert not answer["ok"] and "77" in answer["message"]
    assert http(url + "no/such/page")[0] == 404
    assert http(url + "static/../panel.py")[0] == 404
    assert http(url + "view.jpg")[0] == 200  # still serving


def test_a_token_is_required_where_one_is_set(panel):
    url = panel["token_url"]
    wait_until(lambda: http(url + "api/objects", headers={"X-Isar-Token": TOKEN})[0] == 200, 60, "the panel")
    assert http(url)[0] == 401
    assert http(url + "api/objects", headers={"X-Isar-Token": "wrong"})[0] == 401
    assert post(url + "api/freeze", {})[0] == 401
    request = urllib.request.Request(url + f"?token={TOKEN}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        cookie = answer.headers["Set-Cookie"]
        assert answer.status == 200 and b"isar_ros teach panel" in answer.read()
    assert f"isar_token={TOKEN}" in cookie and "HttpOnly" in cookie
    assert http(url + "api/objects", headers={"Cookie": cookie.split(";")[0]})[0] == 200


def test_binding_beyond_loopback_without_a_token_is_refused(tmp_path):
    process = Process(
        python("-m", "isar_ros.ros.web_node", "--ros-args", "-p", "bind_address:=0.0.0.0", "-p", "port:=0")
    )
    assert process.wait(60) == 2
    assert "reachable from other machines" in process.output and "token" in process.output


def drag_box(page, to_page, box: tuple[int, int, int, int]) -> None:
    """Drag from just outside one corner of ``box`` (x, y, w, h in image pixels) to the opposite one."""
    x, y, w, h = box
    page.mouse.move(*to_page(x - 4, y - 4))
    page.mouse.down()
    page.mouse.move(*to_page(x + w // 2, y + h // 2), steps=4)
    page.mouse.move(*to_page(x + w + 4, y + h + 4), steps=4)
    page.mouse.up()


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip(
            "no chromium here: install Debian's chromium (make setup does so as root) for the browser test"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: run make setup")
    return path


def test_teach_rename_and_forget_from_the_browser(panel, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("ISAR_PANEL_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    client = panel["client"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(panel["url"])
            # The live camera image arrives.
            page.wait_for_function("document.getElementById('live').naturalWidth === 640", timeout=30_000)
            # Drag a box around the object: the view freezes and the proposed mask is shown.
            view = page.locator("#view").bounding_box()
            x, y, w, h = MUG

            def to_page(px: float, py: float) -> tuple[float, float]:
                return view["x"] + px * view["width"] / 640, view["y"] + py * view["height"] / 480

            drag_box(page, to_page, MUG)
            expect(page.locator("#message")).to_contain_text("proposed mask", timeout=60_000)
            assert page.locator("#frozen").is_visible() and not page.locator("#live").is_visible()
            proposed = int(page.locator("#message").inner_text().split()[2])
            assert 0.6 * w * h < proposed < 1.6 * w * h  # the mask covers the object, not the image
            page.fill("#name", "red mug")
            page.screenshot(path=str(shots / "panel-desktop-preview.png"))
            page.click("#teach-button")
            expect(page.locator("#message")).to_contain_text("taught object", timeout=60_000)
            assert "red mug" in object_names(client)  # through the teach node's service
            # Listed with its thumbnail, then found by the inference node.
            item = page.locator('li.object[data-name="red mug"]')
            expect(item).to_be_visible(timeout=30_000)
            expect(item).to_have_class("object present", timeout=60_000)
            thumbnail = item.locator("img")
            expect(thumbnail).to_be_visible()
            page.wait_for_function("document.querySelector('li.object img').naturalWidth > 0", timeout=10_000)
            assert "in view" in item.inner_text()
            expect(item).to_contain_text("last seen (", timeout=30_000)  # the teach node's object map
            page.wait_for_timeout(1500)  # the live view moves on to the overlay naming it
            page.screenshot(path=str(shots / "panel-desktop.png"))
            # Another view of the same object (multi-shot): chosen under "Add to", no name needed.
            object_id = item.get_attribute("data-id")
            drag_box(page, to_page, MUG)
            expect(page.locator("#message")).to_contain_text("proposed mask", timeout=60_000)
            page.select_option("#target", object_id)
            expect(page.locator("#teach-button")).to_have_text("Add view")
            page.click("#teach-button")
            expect(page.locator("#message")).to_contain_text(f"taught object {object_id}", timeout=60_000)
            expect(item).to_contain_text("2 views", timeout=30_000)
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
            phone.goto(panel["url"])
            expect(phone.locator('li.object[data-name="red mug"]')).to_be_visible(timeout=30_000)
            phone.wait_for_function("document.getElementById('live').naturalWidth === 640", timeout=30_000)
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
            phone.screenshot(path=str(shots / "panel-phone.png"), full_page=True)
            phone.close()
            # Rename and forget from the page.
            page.once("dialog", lambda dialog: dialog.accept("striped mug"))
            item.locator("button.rename").click()
            expect(page.locator('li.object[data-name="striped mug"]')).to_be_visible(timeout=30_000)
            assert object_names(client) == {"striped mug"}
            page.once("dialog", lambda dialog: dialog.accept())
            page.locator('li.object[data-name="striped mug"] button.forget').click()
            expect(page.locator("#empty")).to_be_visible(timeout=30_000)
            assert object_names(client) == set()
        finally:
            browser.close()
