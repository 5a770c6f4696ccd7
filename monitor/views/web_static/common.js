// Shared by the overview and the mouse page: building elements, times, sparklines, the live
// connection (server-sent events) to the web view.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const UNIT_SHORT = ["OT", "NB", "CB", "EP", "WC"];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "cls") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function clock(t) {
  if (t === null || t === undefined) return "—";
  const d = new Date(t * 1000);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit"});
  return today ? time : `${d.toLocaleDateString()} ${time}`;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function number(value, digits) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(digits);
}

// A line of the last totals, 0 at the bottom and 10 at the top.
function sparkline(values, width, height) {
  const box = svg("svg", {viewBox: `0 0 ${width} ${height}`, class: "spark",
                          preserveAspectRatio: "none", "aria-hidden": "true"});
  if (values.length > 1) {
    const step = width / (values.length - 1);
    const points = values.map((v, i) =>
      `${(i * step).toFixed(1)},${(height - (v / 10) * height).toFixed(1)}`);
    box.append(svg("polyline", {points: points.join(" "), class: "spark-line"}));
  }
  return box;
}

// Follows /events: `onState` gets every overview the server sends; the badge says whether the
// page is live. EventSource reconnects by itself after each stream ends.
function follow(onState) {
  const badge = document.getElementById("live");
  const source = new EventSource("/events");
  source.addEventListener("state", (event) => {
    badge.textContent = "live";
    badge.className = "live on";
    onState(JSON.parse(event.data));
  });
  source.addEventListener("error", () => {
    badge.textContent = "reconnecting…";
    badge.className = "live off";
  });
  return source;
}

function mouseUrl(mouse) {
  return `/mouse/${encodeURIComponent(mouse)}`;
}
