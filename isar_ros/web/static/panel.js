// The isar_ros teach panel. Live view -> click or drag freezes the newest camera frame; clicks and a box
// on that frame make the prompt; every change asks the teach node for the proposed mask (a preview that
// changes nothing); Teach commits it under a name (or as another view of a taught object).
"use strict";

const $ = (id) => document.getElementById(id);
const view = $("view"), live = $("live"), canvas = $("frozen"), ctx = canvas.getContext("2d");
const DRAG_PX = 8;

const state = {
  frame: null,          // {frame, width, height, image}
  points: [],           // [x, y, positive] in frame pixels
  box: null,            // [x0, y0, x1, y1]
  order: [],            // "point" | "box", for undo
  preview: null,        // Image of the frame with the proposed mask
  previewSeq: 0,
  gesture: null,        // pointer gesture in progress
  freezing: null,       // Promise while a freeze request runs
  objectsJson: "",
};

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    return {ok: false, message: "the panel's node does not answer (" + error.message + ")"};
  }
  try {
    return await response.json();
  } catch (error) {
    return {ok: false, message: "unexpected answer " + response.status + " from " + path};
  }
}

// ---- live view and frozen frame ------------------------------------------------------------------
function liveMode() {
  state.frame = null; state.points = []; state.box = null; state.order = []; state.preview = null;
  canvas.hidden = true; live.hidden = false;
  $("teach-button").disabled = $("undo-button").disabled = $("cancel-button").disabled = true;
  $("status").textContent = "live";
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("could not load " + src));
    image.src = src;
  });
}

async function freeze() {
  const answer = await api("/api/freeze", {});
  if (!answer.ok) { say(answer.message, true); return null; }
  const image = await loadImage("/api/frames/" + answer.frame + ".jpg");
  state.frame = {frame: answer.frame, width: answer.width, height: answer.height, image};
  canvas.width = answer.width; canvas.height = answer.height;
  live.hidden = true; canvas.hidden = false;
  $("cancel-button").disabled = false;
  $("status").textContent = "frame frozen: add clicks or a box, then Teach";
  draw();
  return state.frame;
}

function draw(rubber) {
  if (!state.frame) return;
  ctx.drawImage(state.preview || state.frame.image, 0, 0, canvas.width, canvas.height);
  const r = Math.max(4, canvas.width / 120);
  ctx.lineWidth = Math.max(2, canvas.width / 320);
  const boxes = state.box ? [state.box] : [];
  if (rubber) boxes.push(rubber);
  for (const [x0, y0, x1, y1] of boxes) {
    ctx.strokeStyle = "#ffd400";
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  for (const [x, y, positive] of state.points) {
    ctx.beginPath();
    ctx.arc(x, y, r, 0, 2 * Math.PI);
    ctx.fillStyle = positive ? "#27ae60" : "#c0392b";
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  }
}

function framePoint(event) {
  const rect = view.getBoundingClientRect();
  const fx = Math.min(Math.max((event.clientX - rect.left) / rect.width, 0), 1);
  const fy = Math.min(Math.max((event.clientY - rect.top) / rect.height, 0), 1);
  return {fx, fy, px: event.clientX, py: event.clientY};
}

function toFrame(p) {
  const f = state.frame;
  return [Math.min(Math.round(p.fx * f.width), f.width - 1), Math.min(Math.round(p.fy * f.height), f.height - 1)];
}

view.addEventListener("contextmenu", (event) => event.preventDefault());

view.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.button !== 2) return;
  event.preventDefault();
  view.setPointerCapture(event.pointerId);
  const start = framePoint(event);
  state.gesture = {start, last: start, negative: event.shiftKey || event.button === 2, dragging: false};
  if (!state.frame && !state.freezing) {
    state.freezing = freeze().finally(() => { state.freezing = null; });
  }
});

view.addEventListener("pointermove", (event) => {
  const g = state.gesture;
  if (!g) return;
  g.last = framePoint(event);
  if (Math.hypot(g.last.px - g.start.px, g.last.py - g.start.py) > DRAG_PX) g.dragging = true;
  if (g.dragging && state.frame) {
    const [x0, y0] = toFrame(g.start), [x1, y1] = toFrame(g.last);
    draw([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)]);
  }
});

view.addEventListener("pointerup", async (event) => {
  const g = state.gesture;
  if (!g) return;
  state.gesture = null;
  g.last = framePoint(event);
  if (state.freezing) await state.freezing;
  if (!state.frame) return;
  if (g.dragging) {
    const [x0, y0] = toFrame(g.start), [x1, y1] = toFrame(g.last);
    if (x0 === x1 || y0 === y1) return;
    state.box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)];
    state.order = state.order.filter((o) => o !== "box");
    state.order.push("box");
  } else {
    const [x, y] = toFrame(g.start);
    state.points.push([x, y, g.negative ? 0 : 1]);
    state.order.push("point");
  }
  promptChanged();
});

async function promptChanged() {
  state.preview = null;
  draw();
  const hasPrompt = state.points.length > 0 || state.box !== null;
  $("undo-button").disabled = !hasPrompt;
  $("teach-button").disabled = !hasPrompt;
  if (!hasPrompt) { say(""); return; }
  const seq = ++state.previewSeq;
  say("proposing a mask...");
  const answer = await api("/api/preview", {frame: state.frame.frame, prompts: currentPrompts()});
  if (seq !== state.previewSeq || !state.frame) return;  // a newer prompt or a cancel came meanwhile
  if (!answer.ok) { say(answer.message, true); return; }
  state.preview = await loadImage(answer.preview);
  say(answer.message);
  draw();
}

function currentPrompts() {
  return {points: state.points, box: state.box};
}

$("undo-button").addEventListener("click", () => {
  const last = state.order.pop();
  if (last === "box") state.box = null; else state.points.pop();
  promptChanged();
});

$("cancel-button").addEventListener("click", () => { state.previewSeq++; liveMode(); say("cancelled"); });
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.frame) { state.previewSeq++; liveMode(); say("cancelled"); }
});

$("teach-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!state.frame) return;
  const objectId = Number($("target").value);
  const name = $("name").value.trim();
  if (objectId === 0 && !name) { say("give the new object a name", true); $("name").focus(); return; }
  $("teach-button").disabled = true;
  say("teaching...");
  const answer = await api("/api/teach", {frame: state.frame.frame, prompts: currentPrompts(), name, object_id: objectId});
  if (!answer.ok) { say(answer.message, true); $("teach-button").disabled = false; return; }
  say(answer.message);
  $("name").value = "";
  $("target").value = "0";
  liveMode();
  targetChanged();
  refreshObjects();
});

// ---- taught objects ------------------------------------------------------------------------------
function when(p) {  // age_s is null when the robot's clock and the image stamps disagree (replays)
  const s = p.age_s;
  if (s === null || s === undefined) return "at t = " + p.stamp.toFixed(1) + " s";
  return s < 90 ? Math.round(s) + " s ago" : s < 5400 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
}

function objectItem(o) {
  const item = document.createElement("li");
  item.className = "object" + (o.present ? " present" : "");
  item.dataset.id = o.id;
  item.dataset.name = o.name;
  const thumb = document.createElement(o.thumbnail ? "img" : "div");
  if (o.thumbnail) { thumb.src = "/api/objects/" + o.id + "/thumbnail.jpg?v=" + o.exemplars; thumb.alt = o.name; }
  else thumb.className = "no-thumb";
  const info = document.createElement("div");
  info.className = "info";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = o.name;
  const detail = document.createElement("div");
  detail.className = "detail";
  const views = o.exemplars + (o.exemplars === 1 ? " view" : " views");
  detail.textContent = views + " \u00b7 " + (o.present ? "in view (" + o.score.toFixed(2) + ")" : "not in view");
  info.append(name, detail);
  if (o.last_seen) {
    const seen = document.createElement("div");
    seen.className = "detail";
    const p = o.last_seen;
    seen.textContent = "last seen (" + [p.x, p.y, p.z].map((v) => v.toFixed(2)).join(", ") + ") m in " +
      (p.frame || "?") + ", " + when(p);
    info.append(seen);
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  const rename = document.createElement("button");
  rename.type = "button"; rename.className = "secondary rename"; rename.textContent = "Rename";
  rename.addEventListener("click", () => renameObject(o));
  const forget = document.createElement("button");
  forget.type = "button"; forget.className = "danger forget"; forget.textContent = "Forget";
  forget.addEventListener("click", () => forgetObject(o));
  actions.append(rename, forget);
  item.append(thumb, info, actions);
  return item;
}

async function refreshObjects() {
  const answer = await api("/api/objects");
  if (!answer.ok) { $("status").textContent = answer.message; return; }
  if (!state.frame) $("status").textContent = "live";
  const json = JSON.stringify(answer.objects);
  if (json === state.objectsJson) return;
  state.objectsJson = json;
  $("object-list").replaceChildren(...answer.objects.map(objectItem));
  $("empty").hidden = answer.objects.length > 0;
  const target = $("target"), chosen = target.value;
  target.replaceChildren(new Option("a new object", "0"),
    ...answer.objects.map((o) => new Option(o.name + " (another view)", String(o.id))));
  target.value = answer.objects.some((o) => String(o.id) === chosen) ? chosen : "0";
  targetChanged();
}

function targetChanged() {  // Teach a new object, or Add view to the chosen one (multi-shot)
  const adding = $("target").value !== "0";
  $("teach-button").textContent = adding ? "Add view" : "Teach";
  $("name").disabled = adding;
}

$("target").addEventListener("change", targetChanged);

async function renameObject(o) {
  const name = window.prompt("New name for " + o.name, o.name);
  if (name === null || !name.trim() || name.trim() === o.name) return;
  const answer = await api("/api/objects/" + o.id + "/rename", {name: name.trim()});
  say(answer.message, !answer.ok);
  refreshObjects();
}

async function forgetObject(o) {
  if (!window.confirm("Forget " + o.name + "? Its views are deleted.")) return;
  const answer = await api("/api/objects/" + o.id + "/forget", {});
  say(answer.message, !answer.ok);
  refreshObjects();
}

$("save-button").addEventListener("click", async () => {
  const answer = await api("/api/save", {});
  say(answer.ok ? "memory saved" : answer.message, !answer.ok);
});

live.addEventListener("error", () => { setTimeout(() => { live.src = "/stream.mjpg?" + Date.now(); }, 2000); });

liveMode();
refreshObjects();
setInterval(refreshObjects, 1000);
