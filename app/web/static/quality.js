// The quality panel of the viewer: the selected slice's image-quality metrics in plain words,
// those that pushed the verdict towards "artifact" first (bar = share of the detector's logit).
(function () {
  "use strict";
  function metricTable(rows, max) {
    const table = document.createElement("table");
    table.className = "iqm";
    for (const r of rows) {
      const tr = document.createElement("tr");
      tr.dataset.metric = r.name;
      const name = document.createElement("td");
      name.textContent = r.label;
      name.title = `${r.name}: ${r.better === "--" ? "context" : r.better + " is better"}`;
      const value = document.createElement("td");
      value.textContent = r.value;
      const bar = document.createElement("td");
      const span = document.createElement("span");
      span.className = "push " + (r.push > 0 ? "up" : "down");
      span.style.width = `${Math.round(50 * Math.abs(r.push) / max)}%`;
      span.title = `share of the logit ${r.push >= 0 ? "+" : ""}${r.push}`;
      bar.appendChild(span);
      const words = document.createElement("td");
      words.className = "muted";
      words.textContent = r.push > 0.05 ? `points to ${r.artifact}` : "";
      tr.append(name, value, bar, words);
      table.appendChild(tr);
    }
    return table;
  }

  function render(section, slice) {
    if (!section) return;
    const rows = (slice && slice.quality) || [];
    section.hidden = rows.length === 0;
    section.replaceChildren();
    if (!rows.length) return;
    const h = document.createElement("h2");
    h.textContent = "Image quality of this slice";
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "What pushed the detector's verdict: a bar to the right pushed towards " +
      "artifact, to the left towards clean." +
      (slice.cnn_probability != null ? ` AMAResNet alone: ${slice.cnn_probability.toFixed(2)}.` : "");
    const max = Math.max(0.5, ...rows.map((r) => Math.abs(r.push)));
    // The metrics that pushed towards "artifact" (at least the first SHOWN) are shown; the rest of
    // the panel (41 metrics) folds into "all metrics", so the reasons are not lost in the list.
    const SHOWN = 6;
    const pushed = rows.filter((r) => r.push > 0.05).length;
    const first = Math.min(rows.length, Math.max(SHOWN, Math.min(pushed, 10)));
    const table = metricTable(rows.slice(0, first), max);
    const parts = [h, note, table];
    if (rows.length > first) {
      const more = document.createElement("details");
      more.className = "iqm-more";
      const summary = document.createElement("summary");
      summary.textContent = `all ${rows.length} metrics (${rows.length - first} more)`;
      more.append(summary, metricTable(rows.slice(first), max));
      parts.push(more);
    }
    section.append(...parts);
  }
  window.amaqcQuality = { render };
})();
