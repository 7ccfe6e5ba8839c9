// The viewer's review form: the series label, slice labels, comment, and the history.
// On a reviewed series the form starts from the newest review (reload shows what was saved);
// on an unreviewed one nothing is chosen: the model's verdict is shown beside it, not for it.
"use strict";
(function () {
  const { data, slices, state, thumbs, keys, info, $ } = window.amaqcViewer;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const latest = data.reviews.length ? data.reviews[0] : null;

  // state.labels: instance id -> { label: "artifact" | "clean", source: "reader" | "model" }
  if (latest) {
    for (const [id, label] of Object.entries(latest.slices)) {
      state.labels[id] = { label, source: (latest.slice_sources || {})[id] || "reader" };
    }
  }

  function setLabel(i, label, source = "reader") {
    const id = slices[i].id;
    if (label) state.labels[id] = { label, source }; else delete state.labels[id];
    refreshLabels();
  }

  function refreshLabels() {
    slices.forEach((s, i) => {
      const lab = thumbs[i].querySelector(".lab"), mine = state.labels[s.id];
      lab.textContent = mine ? mine.label + (mine.source === "model" ? " (model)" : "") : "";
      lab.className = "lab " + (mine ? mine.label : "");
    });
    const n = Object.keys(state.labels).length, fromModel = modelAccepted().length;
    $("slice-label-count").textContent = n ? `${n} of ${slices.length} labelled` +
      (fromModel ? ` (${fromModel} accepted from the model)` : "") : "none";
    $("model-confirm").hidden = fromModel === 0;
    $("model-count").textContent = fromModel;
    info();
  }

  function modelAccepted() {
    return Object.keys(state.labels).filter((id) => state.labels[id].source === "model");
  }

  function chosenLabel() {
    const checked = document.querySelector('#review input[name="label"]:checked');
    return checked ? checked.value : null;
  }

  function decision() {
    const el = $("decision"), label = chosenLabel();
    if (!data.verdict || !label) { el.textContent = ""; el.className = "decision"; return; }
    const same = label === data.verdict.label;
    el.textContent = same ? "Confirms the model's verdict" : `Overrides the model (${data.verdict.label})`;
    el.className = "decision " + (same ? "confirmed" : "overridden");
  }

  function reviewState(r) {
    const el = $("review-state");
    el.className = "review-state review-" + r.state;
    el.innerHTML = "";
    const b = document.createElement("b"), small = document.createElement("small");
    b.textContent = r.summary;
    small.textContent = ` by ${r.reviewer}, ${r.at} UTC`;
    el.append(b, small);
    $("submit-review").textContent = "Save as a new review";
  }

  function history() {
    const ol = $("history");
    ol.innerHTML = "";
    if (!data.reviews.length) { ol.innerHTML = "<li class='muted'>not reviewed yet</li>"; return; }
    for (const r of data.reviews) {
      const li = document.createElement("li"), n = Object.keys(r.slices).length;
      const m = Object.values(r.slice_sources || {}).filter((s) => s === "model").length;
      const fromModel = m ? `, ${m} accepted from the model (${r.model_slices_confirmed ? "checked" : "not checked: not used for retraining"})` : "";
      li.textContent = `${r.text} by ${r.reviewer}, ${r.at} UTC` +
        (n ? ` · ${n} slice label${n > 1 ? "s" : ""}${fromModel}` : "") + (r.comment ? ` — “${r.comment}”` : "");
      ol.appendChild(li);
    }
  }

  function summary(label) {
    const model = data.verdict ? data.verdict.label : null;
    if (!model) return `Reviewed: ${label} (there was no model verdict)`;
    return `Reviewed: ${label} — ${label === model ? "confirms" : "overrides"} the model (${model})`;
  }

  $("review").addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = $("review-status"), label = chosenLabel();
    if (!label) { status.textContent = "Choose artifact or clean."; return; }
    $("submit-review").disabled = true;
    status.textContent = "Saving…";
    const labels = {}, sources = {}, confirmed = modelAccepted().length > 0 && $("model-confirmed").checked;
    for (const [id, v] of Object.entries(state.labels)) { labels[id] = v.label; sources[id] = v.source; }
    try {
      const r = await fetch(data.review_url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ label, slices: labels, slice_sources: sources,
          model_slices_confirmed: confirmed, comment: $("comment").value }),
      });
      const body = await r.json();
      if (!r.ok) throw new Error(body.detail || r.statusText);
      status.textContent = `Saved: ${body.decision} (${body.label}) by ${body.reviewer}.`;
      const saved = { id: body.id, label: body.label, state: body.decision,
        text: `${body.decision} (${body.label})`, summary: summary(body.label),
        reviewer: body.reviewer, at: body.created_at.slice(0, 19), comment: body.comment,
        slices: body.slices, slice_sources: body.slice_sources,
        model_slices_confirmed: body.model_slices_confirmed };
      data.reviews.unshift(saved);
      reviewState(saved); history();
    } catch (err) {
      status.textContent = "Not saved: " + err.message;
    } finally {
      $("submit-review").disabled = false;
    }
  });
  document.querySelectorAll('#review input[name="label"]').forEach((r) => r.addEventListener("change", decision));
  $("use-model").addEventListener("click", () => {
    slices.forEach((s, i) => { if (s.label) setLabel(i, s.label, "model"); });
  });
  $("clear-slices").addEventListener("click", () => {
    for (const id of Object.keys(state.labels)) delete state.labels[id];
    refreshLabels();
  });
  Object.assign(keys, {
    a: () => setLabel(state.index, "artifact"), c: () => setLabel(state.index, "clean"),
    u: () => setLabel(state.index, null),
  });
  decision(); history();
  if (slices.length) refreshLabels();
})();
