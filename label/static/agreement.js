// The export button: writes the label CSVs on the server and says what was written; the
// release buttons free a rater's name for another browser.
"use strict";

document.getElementById("export").addEventListener("click", async () => {
  const out = document.getElementById("export-status");
  out.textContent = "writing…";
  try {
    const response = await fetch("/api/export", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: "{}"});
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    out.textContent = `${data.labels} label rows, ${data.boxes} face boxes written ` +
      `(${data.files.join(", ")})` + (data.warnings.length ? "; " + data.warnings.join("; ") : "");
  } catch (error) { out.textContent = error.message; }
});

document.querySelectorAll("button.release").forEach((button) => button.addEventListener(
  "click", async () => {
    const out = document.getElementById("release-status");
    try {
      const response = await fetch("/api/release", {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({name: button.dataset.name})});
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || response.statusText);
      out.textContent = data.released ? `${button.dataset.name}: the next browser to give ` +
        "this name takes it" : `${button.dataset.name} was not taken`;
      button.remove();
    } catch (error) { out.textContent = error.message; }
  }));
