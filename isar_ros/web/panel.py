"""The web teach panel: an HTTP server (standard library only, no rclpy) for a browser next to the robot.

The ``isar_web`` node feeds it camera frames, overlays, found instances and the object map, and gives it
a :class:`TeachService` that forwards to the teach node's services; the panel holds no second path into
the memory. What the browser gets:

====================================  ================================================================
``GET /``                             the page (``static/index.html``; its script and style beside it)
``GET /stream.mjpg``                  the live view (the inference overlay when one arrives, else the
                                      camera) as MJPEG, at most ``stream_fps`` and ``stream_width``
``GET /view.jpg``                     the newest view as one JPEG
``POST /api/freeze``                  keep the newest camera frame for prompting -> ``{frame, width, height}``
``GET /api/frames/<frame>.jpg``       that frame at full resolution
``POST /api/preview``                 ``{frame, prompts}`` -> the proposed mask drawn on the frame
``POST /api/teach``                   ``{frame, prompts, name, object_id}`` (object_id > 0: add a view)
``GET /api/objects``                  the taught objects, with present-now score and last-seen place
``GET /api/objects/<id>/thumbnail.jpg``
``POST /api/objects/<id>/rename``     ``{name}``
``POST /api/objects/<id>/forget``
``POST /api/save``
====================================  ================================================================

Prompts are ``{"points": [[x, y, positive], ...], "box": [x0, y0, x1, y1] | null}`` in pixels of the
frozen frame. Errors answer ``{"ok": false, "message": ...}`` with status 400 (bad request), 401 (token),
404 or 503 (teach node not answering); the server keeps running. With a ``token`` every request needs
it (query ``?token=``, once: it is then kept in a cookie, or header ``X-Isar-Token``). Binding to
an address other than loopback without a token is refused.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from isar_ros.core.prompt_mask import NEGATIVE, POSITIVE, Prompt
from isar_ros.core.visualize import overlay
from isar_ros.errors import ConfigurationError, UserError
from isar_ros.settings import setting

STATIC = Path(__file__).with_name("static")
ASSETS = {"panel.js": "text/javascript", "panel.css": "text/css", "index.html": "text/html"}
FROZEN_KEPT = 4  # frozen frames kept (one per browser tab prompting at once is plenty)
PRESENT_S = 2.0  # an object counts as present when the last instances within this many seconds hold it
MAX_BODY = 64 * 1024  # bytes of a POST body
MAX_STREAMS = 4  # MJPEG clients at once
LIST_REUSE_S = 0.5  # the teach node's object list is asked at most this often
MAX_AGE_S = 7 * 86400.0  # a "last seen" older than this (or in the future) means the clocks disagree


@dataclass
class WebSettings:
    port: int = setting(8088, "TCP port of the panel (0: any free port, logged)", low=0, high=65535)
    bind_address: str = setting(
        "127.0.0.1", "address to listen on; other than loopback needs a token (0.0.0.0 = every interface)"
    )
    token: str = setting(
        "", "access token the browser must present (?token=...); empty = none (loopback only)"
    )
    stream_fps: float = setting(5.0, "most frames per second of the live view", low=0.2, high=30.0)
    stream_width: int = setting(
        640, "widest live view sent, pixels (larger frames are scaled down)", low=64, high=4096
    )
    jpeg_quality: int = setting(80, "JPEG quality of the live view", low=10, high=100)
    service_timeout_s: float = setting(
        30.0, "seconds to wait for the teach node's answer", low=1.0, high=600.0
    )


@dataclass
class TeachAnswer:
    ok: bool
    message: str
    object_id: int = 0
    masks: list[np.ndarray] = field(default_factory=list)  # boolean, one per frame


@dataclass
class ObjectEntry:
    object_id: int
    name: str
    num_exemplars: int
    thumbnail_jpeg: bytes = b""


class TeachService(Protocol):
    """What the panel needs of the teach node (the node forwards to its services)."""

    def teach(
        self, rgb: np.ndarray, prompts: list[Prompt], name: str, object_id: int, preview: bool
    ) -> TeachAnswer: ...

    def objects(self) -> list[ObjectEntry]: ...

    def rename(self, object_id: int, name: str) -> tuple[bool, str]: ...

    def forget(self, object_id: int) -> tuple[bool, str]: ...

    def save(self) -> tuple[bool, str]: ...


class LazyImage:
    """An image converted from its message only when first asked for (the node receives up to 30 a second;
    the browser sees a few of them). ``get()`` gives the RGB array, or None when it cannot be converted."""

    def __init__(self, convert: Callable[[], np.ndarray | None]):
        self._convert: Callable[[], np.ndarray | None] | None = convert
        self._rgb: np.ndarray | None = None

    def get(self) -> np.ndarray | None:
        if self._convert is not None:
            self._rgb, self._convert = self._convert(), None
        return self._rgb


class BadRequest(UserError):
    """A request the panel cannot serve; the message goes back to the browser."""


def is_loopback(address: str) -> bool:
    """True for 127.x.x.x, ::1 and "localhost"; "" and 0.0.0.0 listen on every interface."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def prompts_from_json(value: Any, width: int, height: int) -> list[Prompt]:
    """The prompts of a request body; :class:`BadRequest` naming what is wrong."""
    if not isinstance(value, dict):
        raise BadRequest("'prompts' must be an object with 'points' and/or 'box'")
    points = value.get("points") or []
    box = value.get("box")
    if not isinstance(points, list) or not all(
        isinstance(p, list) and len(p) == 3 and all(isinstance(v, (int, float)) for v in p) for p in points
    ):
        raise BadRequest("'points' must be a list of [x, y, positive] with numbers")
    if box is not None and (
        not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box)
    ):
        raise BadRequest("'box' must be [x0, y0, x1, y1] in pixels, or null")
    if not points and box is None:
        raise BadRequest("no prompt yet: click on the object or drag a box around it")
    prompt = Prompt(
        np.array([p[:2] for p in points], np.float32).reshape(-1, 2),
        np.array([POSITIVE if p[2] else NEGATIVE for p in points], np.int32),
        None if box is None else np.array(box, np.float32),
    )
    prompt.validate(width, height)
    return [prompt]


def encode_jpeg(rgb: np.ndarray, quality: int = 85, max_width: int = 0) -> bytes:
    if max_width and rgb.shape[1] > max_width:
        scale = max_width / rgb.shape[1]
        rgb = cv2.resize(rgb, (max_width, max(1, round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


class Panel:
    """The panel's state: newest frames, frozen frames, what was found; thread-safe."""

    def __init__(self, settings: WebSettings, service: TeachService, clock: Any = time.time):
        """``clock()``: the graph's time in seconds (ROS time: sim time under replays), for "seen ... ago"."""
        self.settings, self.service, self.clock = settings, service, clock
        self._lock = threading.Lock()
        self._new_view = threading.Condition(self._lock)
        self._camera: LazyImage | None = None
        self._overlay: tuple[LazyImage, float] | None = None
        self._view_seq = 0
        self._view_jpeg: tuple[int, bytes] = (-1, b"")
        self._frozen: OrderedDict[str, np.ndarray] = OrderedDict()
        self._next_frame = 1
        self._found: tuple[dict[int, float], float] = ({}, 0.0)
        self._seen: dict[int, dict[str, Any]] = {}
        self.streams = 0
        self.stopping = threading.Event()
        self._listed: tuple[float, list[ObjectEntry]] = (-1e9, [])

    def _entries(self) -> list[ObjectEntry]:
        """The teach node's list, asked at most every :data:`LIST_REUSE_S` (browsers poll it)."""
        when, entries = self._listed
        if time.monotonic() - when > LIST_REUSE_S:
            entries = self.service.objects()
            self._listed = (time.monotonic(), entries)
        return entries

    def changed(self) -> None:
        """The memory changed through the panel: list it afresh next time."""
        self._listed = (-1e9, [])

    # ---- fed by the node ---------------------------------------------------------------------------
    def camera_frame(self, image: LazyImage) -> None:
        with self._lock:
            self._camera = image
            if self._overlay is None or time.monotonic() - self._overlay[1] > PRESENT_S:
                self._view_seq += 1
                self._new_view.notify_all()

    def overlay_frame(self, image: LazyImage) -> None:
        with self._lock:
            self._overlay = (image, time.monotonic())
            self._view_seq += 1
            self._new_view.notify_all()

    def instances(self, scores: dict[int, float]) -> None:
        with self._lock:
            self._found = (dict(scores), time.monotonic())

    def object_map(self, entries: dict[int, dict[str, Any]]) -> None:
        with self._lock:
            self._seen = dict(entries)

    # ---- served to the browser --------------------------------------------------------------------
    def view_jpeg(self) -> tuple[int, bytes]:
        """(sequence number, JPEG) of the newest view; (0, b"") before any frame arrived."""
        with self._lock:
            seq = self._view_seq
            if self._view_jpeg[0] == seq:
                return self._view_jpeg
            fresh_overlay = self._overlay is not None and time.monotonic() - self._overlay[1] <= PRESENT_S
            image = self._overlay[0] if fresh_overlay and self._overlay is not None else self._camera
        rgb = image.get() if image is not None else None
        if rgb is None:
            return 0, b""
        data = encode_jpeg(rgb, self.settings.jpeg_quality, self.settings.stream_width)
        with self._lock:
            self._view_jpeg = (seq, data)
        return seq, data

    def stop(self) -> None:
        """Wake and end every live stream (the server is shutting down)."""
        with self._lock:
            self.stopping.set()
            self._new_view.notify_all()

    def open_stream(self) -> bool:
        """Count a new live-view client; False when :data:`MAX_STREAMS` are open already."""
        with self._lock:
            if self.streams >= MAX_STREAMS:
                return False
            self.streams += 1
            return True

    def close_stream(self) -> None:
        with self._lock:
            self.streams -= 1

    def wait_for_view(self, after: int, timeout: float) -> None:
        with self._lock:
            self._new_view.wait_for(lambda: self._view_seq != after or self.stopping.is_set(), timeout)

    def freeze(self) -> dict[str, Any]:
        with self._lock:
            camera = self._camera
        rgb = camera.get() if camera is not None else None
        if rgb is None:
            raise BadRequest(
                "no usable camera image yet; is the camera publishing on the image topic (the web node's "
                "log names a refused encoding)?"
            )
        with self._lock:
            frame_id = str(self._next_frame)
            self._next_frame += 1
            self._frozen[frame_id] = rgb
            while len(self._frozen) > FROZEN_KEPT:
                self._frozen.popitem(last=False)
        height, width = rgb.shape[:2]
        return {"ok": True, "frame": frame_id, "width": width, "height": height}

    def frozen(self, frame_id: Any) -> np.ndarray:
        with self._lock:
            rgb = self._frozen.get(str(frame_id))
        if rgb is None:
            raise BadRequest(f"frame {frame_id!r} is no longer kept; click on the live view again")
        return rgb

    def preview(self, body: dict[str, Any]) -> dict[str, Any]:
        rgb = self.frozen(body.get("frame"))
        prompts = prompts_from_json(body.get("prompts"), rgb.shape[1], rgb.shape[0])
        answer = self.service.teach(rgb, prompts, "", 0, preview=True)
        if not answer.ok or not answer.masks:
            return {"ok": False, "message": answer.message}
        mask = answer.masks[0]
        picture = overlay(rgb, mask.astype(np.int32) * 0xFFFF, {0xFFFF: "proposed"}, alpha=0.45)
        data = base64.b64encode(encode_jpeg(picture, 85)).decode()
        return {
            "ok": True,
            "message": f"proposed mask: {int(mask.sum())} pixels ({100 * mask.mean():.1f} % of the image)",
            "preview": "data:image/jpeg;base64," + data,
        }

    def teach(self, body: dict[str, Any]) -> dict[str, Any]:
        rgb = self.frozen(body.get("frame"))
        prompts = prompts_from_json(body.get("prompts"), rgb.shape[1], rgb.shape[0])
        object_id = body.get("object_id", 0)
        name = body.get("name", "")
        if not isinstance(object_id, int) or isinstance(object_id, bool) or not 0 <= object_id <= 65535:
            raise BadRequest("'object_id' must be 0 (a new object) or the id of a taught object")
        if not isinstance(name, str) or (object_id == 0 and not name.strip()):
            raise BadRequest("give the new object a name")
        answer = self.service.teach(rgb, prompts, name.strip(), object_id, preview=False)
        self.changed()
        return {"ok": answer.ok, "message": answer.message, "object_id": answer.object_id}

    def objects(self) -> list[dict[str, Any]]:
        entries = self._entries()
        with self._lock:
            scores, when = self._found
            seen = {k: dict(v) for k, v in self._seen.items()}
        recent = time.monotonic() - when <= PRESENT_S
        now = self.clock()
        for entry in seen.values():
            age = now - entry["stamp"]
            entry["age_s"] = round(age, 1) if 0 <= age < MAX_AGE_S else None  # None: clocks disagree
        return [
            {
                "id": e.object_id,
                "name": e.name,
                "exemplars": e.num_exemplars,
                "thumbnail": bool(e.thumbnail_jpeg),
                "present": recent and e.object_id in scores,
                "score": round(float(scores.get(e.object_id, 0.0)), 3) if recent else 0.0,
                "last_seen": seen.get(e.object_id),
            }
            for e in entries
        ]

    def thumbnail(self, object_id: int) -> bytes:
        for entry in self._entries():
            if entry.object_id == object_id and entry.thumbnail_jpeg:
                return entry.thumbnail_jpeg
        raise LookupError(f"object {object_id} has no thumbnail")


class PanelServer:
    """Serves a :class:`Panel` on ``settings.bind_address:settings.port`` from a background thread."""

    def __init__(self, panel: Panel):
        settings = panel.settings
        if not is_loopback(settings.bind_address) and not settings.token:
            raise ConfigurationError(
                f"isar_web: bind_address {settings.bind_address!r} is reachable from other machines; set a "
                "token (-p token:=<secret>) or bind to 127.0.0.1"
            )
        self.panel = panel
        handler = type("Handler", (PanelHandler,), {"panel": panel})
        try:
            self.httpd = ThreadingHTTPServer((settings.bind_address, settings.port), handler)
        except OSError as error:
            raise ConfigurationError(
                f"isar_web: cannot listen on {settings.bind_address}:{settings.port} "
                f"({error.strerror or error}); choose another port with -p port:=<n>"
            ) from None
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="isar_web_http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.panel.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


FROZEN_FRAME = re.compile(r"^/api/frames/(\w+)\.jpg$")
THUMBNAIL = re.compile(r"^/api/objects/(\d+)/thumbnail\.jpg$")
OBJECT_ACTION = re.compile(r"^/api/objects/(\d+)/(rename|forget)$")


class PanelHandler(BaseHTTPRequestHandler):
    panel: Panel
    server_version = "isar_web"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # the node logs what matters; per-request lines would drown the console

    # ---- access -----------------------------------------------------------------------------------
    def _token_ok(self, query: dict[str, list[str]]) -> bool:
        token = self.panel.settings.token
        if not token:
            return True
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        offered = [
            *query.get("token", []),
            self.headers.get("X-Isar-Token", ""),
            cookie["isar_token"].value if "isar_token" in cookie else "",
        ]
        return any(hmac.compare_digest(o.encode(), token.encode()) for o in offered if o)

    # ---- replies ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"ok": False, "message": message}, status)

    # ---- GET --------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._token_ok(query):
            self._error(
                HTTPStatus.UNAUTHORIZED, "this panel needs its access token: open it with ?token=<token>"
            )
            return
        try:
            self._get(url.path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except (LookupError, BadRequest) as error:
            self._error(HTTPStatus.NOT_FOUND, str(error))

    def _get(self, path: str, query: dict[str, list[str]]) -> None:
        panel = self.panel
        if path in ("/", "/static/index.html"):
            extra = {}
            if query.get("token"):  # keep it for the page's own requests
                extra["Set-Cookie"] = f"isar_token={query['token'][0]}; HttpOnly; SameSite=Strict; Path=/"
            self._send(HTTPStatus.OK, (STATIC / "index.html").read_bytes(), "text/html; charset=utf-8", extra)
        elif path.startswith("/static/") and (name := path.removeprefix("/static/")) in ASSETS:
            self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), ASSETS[name] + "; charset=utf-8")
        elif path == "/view.jpg":
            _, data = panel.view_jpeg()
            if not data:
                raise LookupError("no camera image yet")
            self._send(HTTPStatus.OK, data, "image/jpeg")
        elif path == "/stream.mjpg":
            self._stream()
        elif path == "/api/objects":
            self._json({"ok": True, "objects": panel.objects()})
        elif match := FROZEN_FRAME.match(path):
            self._send(HTTPStatus.OK, encode_jpeg(panel.frozen(match.group(1)), 92), "image/jpeg")
        elif match := THUMBNAIL.match(path):
            self._send(HTTPStatus.OK, panel.thumbnail(int(match.group(1))), "image/jpeg")
        else:
            raise LookupError(f"no such page: {path}")

    def _stream(self) -> None:
        panel = self.panel
        if not panel.open_stream():
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"at most {MAX_STREAMS} live views at once")
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=isarframe")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            period, sent = 1.0 / panel.settings.stream_fps, -1
            while not panel.stopping.is_set():
                start = time.monotonic()
                seq, data = panel.view_jpeg()
                if data and seq != sent:
                    head = f"--isarframe\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode() + data + b"\r\n")
                    self.wfile.flush()
                    sent = seq
                panel.wait_for_view(sent, timeout=1.0)
                time.sleep(max(0.0, period - (time.monotonic() - start)))
        finally:
            panel.close_stream()
            self.close_connection = True

    # ---- POST -------------------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        url = urlsplit(self.path)
        if not self._token_ok(parse_qs(url.query)):
            self._error(
                HTTPStatus.UNAUTHORIZED, "this panel needs its access token: open it with ?token=<token>"
            )
            return
        try:
            body = self._body()
            self._json(self._post(url.path, body))
        except (BrokenPipeError, ConnectionResetError):
            pass
        except LookupError as error:
            self._error(HTTPStatus.NOT_FOUND, str(error))
        except TimeoutError as error:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"{error}; is the teach node running?")
        except UserError as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise BadRequest(f"request body of {length} bytes is larger than {MAX_BODY}")
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadRequest(f"the request body is not JSON ({error})") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        panel = self.panel
        if path == "/api/freeze":
            return panel.freeze()
        if path == "/api/preview":
            return panel.preview(body)
        if path == "/api/teach":
            return panel.teach(body)
        if path == "/api/save":
            ok, message = panel.service.save()
            return {"ok": ok, "message": message}
        match = OBJECT_ACTION.match(path)
        if not match:
            raise LookupError(f"no such action: {path}")
        object_id, action = int(match.group(1)), match.group(2)
        if action == "rename":
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise BadRequest("give the new name")
            ok, message = panel.service.rename(object_id, name.strip())
        else:
            ok, message = panel.service.forget(object_id)
        panel.changed()
        return {"ok": ok, "message": message}
