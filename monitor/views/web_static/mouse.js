// A mouse's page: its total and unit levels over the last 24 h or 7 days drawn here (SVG),
// alert spans shaded, acknowledgements as lines, the latest crops, and its camera's annotated
// snapshot taken on request by the monitor that owns the camera.
"use strict";

const mouse = document.body.dataset.mouse;
let span = "day";
let shownVersion = -1;
let loading = false;
let lastLoad = 0;
let pending = null;
const RELOAD_MS = 5000;  // a week of samples is fetched again at most this often

const W = 900, ROW = 34, TOTAL_H = 160, PAD = 36;

// The chart starts where the data does when the view has seen less than the span (it holds
// what arrived since it started, and what --history read), a minute at least.
function chartStart(data) {
  const times = [...data.points.map((p) => p[0]), ...data.alerts.map((a) => a.raised_wall),
                 ...data.acks.map((a) => a.wall_time), ...data.markers.map((m) => m.wall_time)];
  const first = times.length ? Math.min(...times) : data.now - data.span;
  return Math.min(data.now - 60, Math.max(data.now - data.span, first - 30));
}

function x(t, data) {
  return PAD + ((t - data.start) / (data.now - data.start)) * (W - PAD - 8);
}

function lane(data, top, height, max, label, values) {
  const parts = [svg("text", {x: 2, y: top + 12, class: "lane-label"})];
  parts[0].textContent = label;
  parts.push(svg("line", {x1: PAD, x2: W - 8, y1: top + height, y2: top + height,
                          class: "axis"}));
  const points = [];
  for (const [t, value] of values) {
    points.push(`${x(t, data).toFixed(1)},${(top + height - (value / max) * height).toFixed(1)}`);
  }
  if (points.length) parts.push(svg("polyline", {points: points.join(" "), class: "series"}));
  if (points.length < 120) {  // few samples: each one seen as a dot
    for (const point of points) {
      const [cx, cy] = point.split(",");
      parts.push(svg("circle", {cx, cy, r: 2.5, class: "dot"}));
    }
  }
  return parts;
}

function drawChart(data) {
  data.start = chartStart(data);
  const height = TOTAL_H + ROW * data.units.length + 30;
  const box = svg("svg", {viewBox: `0 0 ${W} ${height}`, class: "series-chart",
                          role: "img", "aria-label": `${mouse} over the ${span}`});
  for (const alert of data.alerts) {
    const x0 = Math.max(PAD, x(alert.raised_wall, data));
    const x1 = x(alert.cleared_wall || data.now, data);
    if (x1 < PAD) continue;
    const rect = svg("rect", {x: x0, y: 0, width: Math.max(2, x1 - x0), height,
                              class: `span span-${alert.rule}`});
    const title = svg("title", {});
    title.textContent = `${alert.rule} alert, raised ${clock(alert.raised_wall)}`;
    rect.append(title);
    box.append(rect);
  }
  box.append(...lane(data, 4, TOTAL_H - 24, 10, "total",
                     data.points.map((p) => [p[0], p[1]])));
  data.units.forEach((unit, k) => {
    box.append(...lane(data, TOTAL_H + k * ROW, ROW - 8, 2, UNIT_SHORT[k],
                       data.points.map((p) => [p[0], p[2][k]])));
  });
  const marks = [...data.acks.map((a) => [a.wall_time, `${a.who}: ${a.note}`]),
                 ...data.markers.map((m) => [m.wall_time, m.text])];  // markers: the records'
  for (const [t, text] of marks) {
    const at = x(t, data);
    if (at < PAD) continue;
    const line = svg("line", {x1: at, x2: at, y1: 0, y2: height, class: "ack-line"});
    const title = svg("title", {});
    title.textContent = text;
    line.append(title);
    box.append(line);
  }
  const from = svg("text", {x: PAD, y: height - 4, class: "lane-label"});
  from.textContent = clock(data.start);
  const to = svg("text", {x: W - 8, y: height - 4, class: "lane-label", "text-anchor": "end"});
  to.textContent = clock(data.now);
  box.append(from, to);
  document.getElementById("chart").replaceChildren(box);
}

function drawEvents(data) {
  const items = [];
  for (const alert of data.alerts) {
    items.push([alert.raised_wall, `${alert.rule} alert raised (${alert.camera})` +
               (alert.cleared_wall ? `, cleared ${clock(alert.cleared_wall)}` : ", active")]);
  }
  for (const ack of data.acks) {
    items.push([ack.wall_time, `acknowledged (${ack.rule}) by ${ack.who}` +
               (ack.note ? `: ${ack.note}` : "")]);
  }
  for (const marker of data.markers) items.push([marker.wall_time, marker.text]);
  items.sort((a, b) => b[0] - a[0]);
  document.getElementById("events").replaceChildren(...items.map(([t, text]) =>
    el("li", {}, el("span", {cls: "dim", text: `${clock(t)} `}), text)));
  if (!items.length) {
    document.getElementById("events").replaceChildren(el("li", {cls: "dim", text: "none"}));
  }
}

function draw(data) {
  const tile = data.tile;
  document.getElementById("demo").hidden = !data.demo;
  document.getElementById("camera").textContent = data.camera;
  document.getElementById("summary").textContent =
    `${tile.status.replace("_", " ")} · total ${tile.total === null ? "—" : tile.total}` +
    (tile.levels ? ` · ${UNIT_SHORT.map((u, i) => `${u} ${tile.levels[i]}`).join(" ")}` : "") +
    ` · ${age(tile.age)} ago` + (tile.alerts.length ? ` · ALERT: ${tile.alerts.join(", ")}` : "");
  drawChart(data);
  drawEvents(data);
  document.getElementById("crops").replaceChildren(...data.crops.map((src) =>
    el("img", {src, cls: "crop", alt: `face crop of ${mouse}`})));
}

async function load() {
  if (loading) return;
  loading = true;
  lastLoad = Date.now();
  try {
    const response = await fetch(`/api/mouse/${encodeURIComponent(mouse)}?span=${span}`);
    const body = await response.json();
    if (response.ok) draw(body);
    else document.getElementById("summary").textContent = body.error;
  } finally {
    loading = false;
  }
}

async function snapshot() {
  const error = document.getElementById("snapshot-error");
  const image = document.getElementById("snapshot");
  const button = document.getElementById("take-snapshot");
  button.disabled = true;
  error.hidden = true;
  try {
    const camera = document.getElementById("camera").textContent;
    const response = await fetch(`/api/snapshot/${encodeURIComponent(camera)}`);
    if (!response.ok) {
      error.textContent = (await response.json()).error;
      error.hidden = false;
      return;
    }
    const blob = await response.blob();
    const reader = new FileReader();  // a data: address: the page's policy loads nothing else
    reader.onload = () => {
      image.src = reader.result;
      image.hidden = false;
    };
    reader.readAsDataURL(blob);
  } catch (err) {
    error.textContent = `no snapshot: ${err}`;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function start() {
  for (const button of document.querySelectorAll("[data-span]")) {
    button.addEventListener("click", () => {
      span = button.dataset.span;
      for (const other of document.querySelectorAll("[data-span]")) {
        other.classList.toggle("on", other === button);
      }
      load();
    });
  }
  document.getElementById("take-snapshot").addEventListener("click", snapshot);
  load();
  follow((data) => {  // the mouse's data again when the view changed, at most every 5 s
    if (data.version === shownVersion || pending !== null) return;
    shownVersion = data.version;
    pending = setTimeout(() => {
      pending = null;
      load();
    }, Math.max(0, lastLoad + RELOAD_MS - Date.now()));
  });
}

document.addEventListener("DOMContentLoaded", start);
