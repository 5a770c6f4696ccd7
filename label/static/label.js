// The scoring page: keyboard first. Every answer goes to the server before the next image
// shows, and keys are ignored until that image has loaded, so nothing is scored unseen.
"use strict";

const UNITS = document.body.dataset.units.split(",");
const $ = (id) => document.getElementById(id);

const state = {
  rater: "",           // this browser's rater, as the server knows it (by its cookie)
  view: null,          // "faces" | "boxes"
  task: null,          // the server's current task payload
  levels: [],          // face: level per unit (null = not scoreable, undefined = not keyed)
  history: [],         // face: units in the order they were keyed, for Backspace
  unit: 0,             // face: the highlighted unit
  box: null,           // boxes: [x, y, w, h] drawn, in image pixels
  drag: null,
  busy: true,
};

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (response.status === 409 && data.next) return data.next;  // answered in another tab
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function taskName() { return state.view === "boxes" ? "box" : "face"; }
function prefix() { return state.view === "boxes" ? "box" : "face"; }

function status(text) { $(prefix() + "-status").textContent = text; }

async function load() {
  state.busy = true;
  try {
    const query = new URLSearchParams({task: taskName()});
    show(await api("/api/task?" + query));
  } catch (error) { status(error.message); }
}

function show(task) {
  state.task = task;
  const p = prefix();
  $(p + "-bar").style.width = (task.total ? 100 * task.done / task.total : 0) + "%";
  $(p + "-count").textContent = `${task.done} of ${task.total} done` +
    (task.skipped ? `, ${task.skipped} skipped for later` : "");
  $(p + "-work").hidden = task.finished;
  $(p + "-done").hidden = !task.finished;
  if (task.finished) { state.busy = false; return; }
  state.levels = UNITS.map(() => undefined); state.history = []; state.unit = 0;
  state.box = null; state.drag = null;
  const img = $(p + "-img");
  img.onload = () => { state.busy = false; if (state.view === "boxes") { fit(); draw(); } };
  img.src = task.image;
  if (state.view === "faces") markUnits();
}

// faces -----------------------------------------------------------------------------------
function markUnits() {
  UNITS.forEach((_, i) => {
    const row = $("unit-" + i), keyed = state.levels[i];
    row.classList.toggle("current", i === state.unit);
    $("ref-" + i).classList.toggle("current", i === state.unit);
    row.querySelectorAll("button").forEach((b) => b.classList.toggle("chosen",
      keyed !== undefined && String(keyed === null ? "x" : keyed) === b.dataset.level));
  });
}

// Sets the highlighted unit and moves to the next one not keyed; the last one saves.
function key(level) {
  state.levels[state.unit] = level;
  state.history = state.history.filter((u) => u !== state.unit).concat([state.unit]);
  const open = UNITS.map((_, i) => i).filter((i) => state.levels[i] === undefined);
  if (open.length === 0) { markUnits(); saveFace(); return; }
  state.unit = open.find((i) => i > state.unit) ?? open[0];
  markUnits();
}

async function saveFace() {
  if (state.levels.includes(undefined)) { status("key all five units first"); return; }
  state.busy = true;
  try {
    show(await api("/api/answer", {task: "face", slot: state.task.slot, levels: state.levels}));
    status("saved");
  } catch (error) { state.busy = false; status(error.message); }
}

function back() {
  if (state.view === "faces" && state.history.length > 0) {
    state.unit = state.history.pop();
    state.levels[state.unit] = undefined;
    markUnits();
  } else if (state.view === "boxes" && state.box) {
    state.box = null; draw();
  } else {
    undo();
  }
}

async function undo() {
  state.busy = true;
  try {
    const task = await api("/api/undo", {task: taskName()});
    show(task);
    status(task.undone ? "last answer taken back" : "nothing to undo");
  } catch (error) { state.busy = false; status(error.message); }
}

async function skip() {
  state.busy = true;
  try {
    show(await api("/api/skip", {task: taskName(), slot: state.task.slot}));
    status("skipped: it comes back at the end");
  } catch (error) { state.busy = false; status(error.message); }
}

// face boxes ------------------------------------------------------------------------------
function scale() { return $("box-img").naturalWidth / $("box-img").clientWidth || 1; }

// A cubicle image as large as the stage and most of the window allow, up or down.
function fit() {
  const img = $("box-img"), stage = img.closest(".stage");
  const width = stage.clientWidth - 16, height = window.innerHeight * 0.75;
  const s = Math.min(width / img.naturalWidth, height / img.naturalHeight);
  img.style.width = Math.floor(img.naturalWidth * s) + "px";
  img.style.height = Math.floor(img.naturalHeight * s) + "px";
}

function draw() {
  const img = $("box-img"), canvas = $("box-canvas");
  canvas.width = img.clientWidth; canvas.height = img.clientHeight;
  const g = canvas.getContext("2d"), s = scale();
  const rect = (b) => g.strokeRect(b[0] / s, b[1] / s, b[2] / s, b[3] / s);
  g.lineWidth = 2;
  if (state.task && state.task.suggestion) {
    g.setLineDash([6, 4]); g.strokeStyle = "#ffd400"; rect(state.task.suggestion);
  }
  g.setLineDash([]); g.strokeStyle = "#00e0ff";
  const box = state.drag ? dragBox() : state.box;
  if (box) rect(box);
  $("box-accept").disabled = !(state.task && state.task.suggestion);
}

function point(event) {
  const r = $("box-canvas").getBoundingClientRect(), s = scale();
  const x = Math.min(Math.max(event.clientX - r.left, 0), r.width);
  const y = Math.min(Math.max(event.clientY - r.top, 0), r.height);
  return [x * s, y * s];
}

function dragBox() {
  const [a, b] = [state.drag.from, state.drag.to];
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(a[0] - b[0]),
          Math.abs(a[1] - b[1])];
}

function startDrag(event) {
  if (state.busy || state.task.finished) return;
  event.preventDefault();
  state.drag = {from: point(event), to: point(event)};
}

function moveDrag(event) {
  if (!state.drag) return;
  state.drag.to = point(event); draw();
}

function endDrag(event) {
  if (!state.drag) return;
  state.drag.to = point(event);
  const box = dragBox();
  state.drag = null;
  if (box[2] >= 4 && box[3] >= 4) { state.box = box; status("box drawn: Enter saves it"); }
  draw();
}

async function saveBox(how) {
  if (how === "drawn" && !state.box) { status("drag a box first"); return; }
  if (how === "suggested" && !state.task.suggestion) { status("no suggestion here"); return; }
  state.busy = true;
  try {
    const body = {task: "box", slot: state.task.slot, how};
    if (how === "drawn") body.box = state.box.map((v) => Math.round(v * 10) / 10);
    show(await api("/api/answer", body));
    status(how === "no_face" ? "saved: no face" : "box saved");
  } catch (error) { state.busy = false; status(error.message); }
}

// keys, views, rater ----------------------------------------------------------------------
function onKey(event) {
  if (!state.view || event.target.tagName === "INPUT") return;
  const k = event.key;
  if (k === "Backspace") event.preventDefault();
  if (state.busy || !state.task || (state.task.finished && k !== "Backspace" && k !== "u")) {
    return;
  }
  if (k === "Backspace" || k === "u") back();
  else if (k === "s") skip();
  else if (state.view === "faces") {
    if (k === "0" || k === "1" || k === "2") key(Number(k));
    else if (k === "x" || k === "X") key(null);
    else if (k === "Enter") saveFace();
    else if (k === "ArrowUp" || k === "ArrowDown") {
      event.preventDefault();
      state.unit = (state.unit + (k === "ArrowUp" ? UNITS.length - 1 : 1)) % UNITS.length;
      markUnits();
    }
  } else {
    if (k === "Enter") saveBox("drawn");
    else if (k === "a") saveBox("suggested");
    else if (k === "n") saveBox("no_face");
  }
}

function route() {
  const body = document.body.dataset;
  let view = location.hash === "#boxes" ? "boxes" : "faces";
  if (view === "faces" && body.hasFaces !== "1") view = "boxes";
  if (view === "boxes" && body.hasBoxes !== "1") view = "faces";
  if (!state.rater) { askName(); return; }
  $("rater-name").textContent = state.rater;
  $("name-view").hidden = true;
  state.view = view;
  $("face-view").hidden = view !== "faces";
  $("box-view").hidden = view !== "boxes";
  document.querySelectorAll(".tab").forEach((t) =>
    t.classList.toggle("active", t.getAttribute("href") === "#" + view));
  load();
}

function askName() {
  state.view = null;
  $("face-view").hidden = $("box-view").hidden = true;
  $("name-view").hidden = false;
  $("rater-input").value = state.rater;
  $("rater-input").focus();
}

$("name-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("rater-input").value.trim();
  if (!name) return;
  try {
    state.rater = (await api("/api/rater", {name})).rater;
  } catch (error) { $("name-status").textContent = error.message; return; }
  $("name-status").textContent = "";
  $("rater-input").blur();
  route();
});
$("change-rater").addEventListener("click", askName);
document.querySelectorAll(".unit button").forEach((b) => b.addEventListener("click", () => {
  if (state.busy) return;
  state.unit = Number(b.closest(".unit").dataset.unit);
  key(b.dataset.level === "x" ? null : Number(b.dataset.level));
}));
$("box-save").addEventListener("click", () => !state.busy && saveBox("drawn"));
$("box-accept").addEventListener("click", () => !state.busy && saveBox("suggested"));
$("box-none").addEventListener("click", () => !state.busy && saveBox("no_face"));
$("box-skip").addEventListener("click", () => !state.busy && skip());
$("box-undo").addEventListener("click", () => !state.busy && back());
$("box-canvas").addEventListener("mousedown", startDrag);
window.addEventListener("mousemove", moveDrag);
window.addEventListener("mouseup", endDrag);
window.addEventListener("resize", () => {
  if (state.view === "boxes" && $("box-img").naturalWidth) { fit(); draw(); }
});
window.addEventListener("hashchange", route);
document.addEventListener("keydown", onKey);
api("/api/rater").then((me) => { state.rater = me.rater || ""; route(); },
                       (error) => { $("name-status").textContent = error.message; askName(); });
