// The overview: a tile per mouse grouped by monitor and camera, and the alerts newest first,
// each with its crops and a form to acknowledge it. Redrawn from every state the server sends;
// an alert's element is made once, so a note being typed survives the updates.
"use strict";

const WHO_KEY = "mgs-web-who";
const alertNodes = new Map();

function drawHeader(data) {
  document.getElementById("title").textContent = data.title || "mgs-monitor";
  document.getElementById("demo").hidden = !data.demo;
  const below = document.getElementById("below");
  below.hidden = !data.below_floor;
  below.textContent = data.below_floor ? `MODEL BELOW THE FLOOR: ${data.below_floor}` : "";
  const notice = document.getElementById("notice");
  notice.hidden = !data.notice;
  notice.textContent = data.notice;
  const health = document.getElementById("health");
  health.replaceChildren(...[...data.problems.map((text) => ({text, bad: true})),
                             ...data.health].map(
    (line) => el("li", {cls: line.bad ? "bad" : "", text: line.text})));
  document.getElementById("footer").textContent =
    `${data.records} records` + (data.models ? ` · models: ${data.models}` : "") +
    (data.threshold !== null ? ` · alert threshold ${data.threshold}` : "");
}

function alertStates(alerts) {
  // Per mouse: "alert" while an alert is active and not acknowledged, "acked" once all are.
  const states = new Map();
  for (const alert of alerts) {
    if (!alert.active) continue;
    const acked = alert.acks.length > 0;
    const before = states.get(alert.mouse);
    states.set(alert.mouse, before === "alert" || !acked ? "alert" : "acked");
  }
  return states;
}

function tile(mouse, states) {
  const state = states.get(mouse.mouse) || (mouse.alerts.length ? "alert" : "");
  const cls = ["tile", `status-${mouse.status}`, state ? `tile-${state}` : "",
               mouse.stale ? "stale" : ""].filter(Boolean).join(" ");
  const levels = el("span", {cls: "levels"}, ...UNIT_SHORT.map((name, i) => {
    const level = mouse.levels ? mouse.levels[i] : null;
    return el("span", {cls: `level level-${level === null ? "none" : level}`,
                       title: name, text: `${name} ${level === null ? "—" : level}`});
  }));
  return el("a", {cls, href: mouseUrl(mouse.mouse), "data-mouse": mouse.mouse},
    el("span", {cls: "tile-head"},
      el("span", {cls: "mouse", text: mouse.mouse}),
      mouse.demo ? el("span", {cls: "tag demo-tag", text: "DEMO"}) : null),
    el("span", {cls: "total", text: mouse.total === null ? "—" : String(mouse.total)}),
    levels,
    sparkline(mouse.spark, 120, 24),
    el("span", {cls: "tile-foot"},
      el("span", {cls: "status", text: mouse.status.replace("_", " ")}),
      el("span", {cls: "dim", text: ` ${age(mouse.age)} ago`}),
      mouse.alerts.length ? el("span", {cls: "tag alert-tag",
                                        text: mouse.alerts.join(", ")}) : null));
}

function camera(cam, states) {
  const head = el("h3", {cls: "camera-head"},
    el("span", {text: cam.name}),
    cam.state ? el("span", {cls: `tag cam-${cam.state}`, text: cam.state}) : null,
    cam.fps ? el("span", {cls: "dim", text: ` ${number(cam.fps, 1)} fps`}) : null,
    cam.dropped ? el("span", {cls: "bad", text: ` ${cam.dropped} frames dropped`}) : null,
    cam.error ? el("span", {cls: "bad", text: ` ${cam.error}`}) : null);
  return el("div", {cls: "camera", "data-camera": cam.name}, head,
    el("div", {cls: "tiles"}, ...cam.mice.map((m) => tile(m, states))));
}

function drawOverview(data) {
  const states = alertStates(data.alerts);
  const several = data.monitors.length > 1;
  document.getElementById("overview").replaceChildren(...data.monitors.map((mon) =>
    el("div", {cls: "monitor", "data-publisher": mon.publisher},
      several ? el("h2", {text: mon.title}) : null,
      ...mon.cameras.map((cam) => camera(cam, states)))));
}

function who() {
  return document.getElementById("who").value.trim();
}

async function acknowledge(alert, node) {
  const reply = node.querySelector(".reply");
  const note = node.querySelector("textarea");
  if (!who()) {
    reply.textContent = "Give your name (top right) once: it is kept in this browser.";
    reply.className = "reply error";
    document.getElementById("who").focus();
    return;
  }
  const button = node.querySelector("button");
  button.disabled = true;
  reply.textContent = "sending…";
  reply.className = "reply";
  try {
    const response = await fetch("/api/ack", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({alert: alert.key, who: who(), note: note.value})});
    const body = await response.json();
    if (response.ok) {
      reply.textContent = `acknowledged by ${body.who} at ${clock(body.wall_time)}`;
      reply.className = "reply ok";
      note.value = "";
    } else {
      reply.textContent = body.error || `refused (${response.status})`;
      reply.className = "reply error";
    }
  } catch (err) {
    reply.textContent = `not sent: ${err}`;
    reply.className = "reply error";
  } finally {
    button.disabled = false;
  }
}

function newAlertNode(alert) {
  const note = el("textarea", {rows: 2, maxlength: 500, placeholder: "note (seen, treated…)",
                               "aria-label": "note"});
  const form = el("form", {cls: "ack-form"}, note,
    el("button", {type: "submit", text: "Acknowledge"}),
    el("p", {cls: "reply", "aria-live": "polite"}));
  const node = el("article", {cls: "alert", "data-key": alert.key},
    el("h3", {},
      alert.mouse === "*" ? el("span", {text: "every mouse"})  // hook_failing
        : el("a", {href: mouseUrl(alert.mouse), text: alert.mouse}),
      el("span", {cls: "rule", text: ` ${alert.rule}`}),
      el("span", {cls: "tag state"}), el("span", {cls: "tag acked-tag", hidden: true})),
    el("p", {cls: "meta"}), el("p", {cls: "window"}),
    el("div", {cls: "crops"}), el("ul", {cls: "acks"}), form);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    acknowledge(alert, node);
  });
  return node;
}

function updateAlert(node, alert) {
  const state = node.querySelector(".state");
  state.textContent = alert.active ? "active" : "cleared";
  state.className = `tag state ${alert.active ? "active" : "cleared"}`;
  const acked = node.querySelector(".acked-tag");
  acked.hidden = alert.acks.length === 0;
  acked.textContent = "acknowledged";
  node.classList.toggle("is-active", alert.active);
  node.classList.toggle("is-acked", alert.acks.length > 0);
  const value = alert.rule === "pain" ? `window mean ${number(alert.value, 2)}, peak ` +
    `${number(alert.peak, 2)}, threshold ${number(alert.threshold, 1)}` : alert.detail;
  node.querySelector(".meta").textContent =
    `${alert.camera} · raised ${clock(alert.raised_wall)}` +
    (alert.cleared_wall ? ` · cleared ${clock(alert.cleared_wall)}` : "") + ` · ${value}`;
  node.querySelector(".window").textContent = alert.totals.length ?
    `window's totals: ${alert.totals.map((t) => t === null ? "—" : t).join(", ")}` : "";
  const crops = node.querySelector(".crops");
  if (crops.childElementCount !== alert.crops.length) {
    crops.replaceChildren(...alert.crops.map((src) =>
      el("img", {src, alt: `face crop of ${alert.mouse}`, cls: "crop", loading: "lazy"})));
  }
  const acks = node.querySelector(".acks");
  if (acks.childElementCount !== alert.acks.length) {
    acks.replaceChildren(...alert.acks.map((ack) =>
      el("li", {cls: "ack"}, el("strong", {text: ack.who}),
        ` ${clock(ack.wall_time)}`, ack.note ? `: ${ack.note}` : "")));
  }
  node.querySelector(".ack-form").hidden = !alert.active;
}

function drawAlerts(data) {
  const list = document.getElementById("alerts");
  document.getElementById("no-alerts").hidden = data.alerts.length > 0;
  const active = data.alerts.filter((a) => a.active).length;
  document.getElementById("alert-count").textContent =
    data.alerts.length ? `${active} active, ${data.alerts.length} listed` : "";
  const keep = new Set(data.alerts.map((a) => a.key));
  for (const [key, node] of alertNodes) {
    if (!keep.has(key)) {
      node.remove();
      alertNodes.delete(key);
    }
  }
  data.alerts.forEach((alert, i) => {
    let node = alertNodes.get(alert.key);
    if (!node) {
      node = newAlertNode(alert);
      alertNodes.set(alert.key, node);
    }
    updateAlert(node, alert);
    if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
  });
}

function draw(data) {
  drawHeader(data);
  drawOverview(data);
  drawAlerts(data);
}

function start() {
  const input = document.getElementById("who");
  input.value = localStorage.getItem(WHO_KEY) || "";
  input.addEventListener("input", () => localStorage.setItem(WHO_KEY, input.value.trim()));
  fetch("/api/state").then((r) => r.json()).then(draw).catch(() => {});
  follow(draw);
}

document.addEventListener("DOMContentLoaded", start);
