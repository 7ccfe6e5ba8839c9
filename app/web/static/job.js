// Training job page: progress bar, figures, loss curve and outcome kept live from the job's
// server-sent events (GET /api/v1/training-jobs/{id}/events); the cancel button asks first.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const SVG = "http://www.w3.org/2000/svg";
  let job = JSON.parse($("job-data").textContent);

  // the same as admin_views.fraction_done
  function fraction(j) {
    if (j.status === "succeeded") return 1;
    const p = j.progress || {};
    const epochs = p.epochs || 0, epoch = p.epoch || 0, step = p.step || 0, steps = p.steps || 0;
    if (epochs <= 0 || epoch <= 0 || steps <= 0) return 0;
    return Math.max(0, Math.min(1, ((epoch - 1) * steps + step) / (epochs * steps)));
  }

  function duration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawCurve(p) {
    const svg = $("loss-curve");
    const w = svg.clientWidth || 400, h = svg.clientHeight || 160;
    const pad = { l: 44, r: 36, t: 8, b: 22 };
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.replaceChildren();
    const points = p.loss_curve || [], epochs = p.epoch_history || [];
    const span = Math.max(1, p.epochs || 1);
    const losses = points.map((q) => q[1]).concat(epochs.map((e) => e.train_loss));
    const top = losses.length ? Math.max(...losses) * 1.05 || 1 : 1;
    const x = (e) => pad.l + (e / span) * (w - pad.l - pad.r);
    const y = (v, max) => h - pad.b - (v / max) * (h - pad.t - pad.b);
    svg.append(el("line", { class: "axis", x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b }));
    svg.append(el("text", { x: 2, y: pad.t + 10 }, top.toPrecision(2)));
    svg.append(el("text", { x: 2, y: h - pad.b }, "0"));
    svg.append(el("text", { x: w - pad.r + 4, y: pad.t + 10 }, "F1 1"));
    svg.append(el("text", { x: pad.l, y: h - 4 }, "epoch 0"));
    svg.append(el("text", { x: w - pad.r - 50, y: h - 4 }, `epoch ${span}`));
    if (!losses.length) {
      svg.append(el("text", { x: pad.l + 8, y: h / 2 }, "the loss curve starts with the first training step"));
      return;
    }
    const line = points.map((q) => `${x(q[0]).toFixed(1)},${y(q[1], top).toFixed(1)}`).join(" ");
    svg.append(el("polyline", { class: "loss", points: line }));
    for (const e of epochs) {
      if (e.val_f1 === null || e.val_f1 === undefined) continue;
      svg.append(el("circle", { class: "f1", cx: x(e.epoch), cy: y(e.val_f1, 1), r: 4 }));
    }
    svg.dataset.points = String(points.length);
  }

  function render(j) {
    job = j;
    const p = j.progress || {};
    const percent = Math.round(100 * fraction(j));
    const bar = $("bar");
    bar.value = percent;
    bar.textContent = `${percent} %`;
    $("progress-text").textContent = `${percent} %` + (j.status === "running" && p.eta_s != null ? ` · about ${duration(p.eta_s)} left` : "");
    const status = $("job-status").querySelector(".status");
    status.textContent = j.status;
    status.className = `status status-${j.status}`;
    document.body.dataset.jobStatus = j.status;
    $("epoch").textContent = `${p.epoch || "–"} of ${p.epochs || "?"}`;
    $("step").textContent = p.step ? `${p.step} of ${p.steps}` : "–";
    $("loss").textContent = p.loss != null ? Number(p.loss).toFixed(4) : "–";
    $("val").textContent = p.val ? `F1 ${Number(p.val.f1).toFixed(3)}` + (p.val.roc_auc != null ? ` · ROC-AUC ${Number(p.val.roc_auc).toFixed(3)}` : "") + (p.best_epoch ? ` · best epoch ${p.best_epoch}` : "") : "–";
    $("eta").textContent = `${duration(p.elapsed_s)} / ${j.status === "running" ? duration(p.eta_s) : "–"}`;
    $("log").textContent = (j.log || []).join("\n");
    $("job-error").hidden = !j.error;
    $("job-error").textContent = j.error || "";
    if (j.result_version_id) {
      $("result").hidden = false;
      $("result-link").href = `/admin/models/${j.result_version_id}`;
      $("result-link").textContent = `version ${j.result_version_id}`;
      $("activation").textContent = j.activation ? j.activation.reason : "";
    }
    $("cancel-form").hidden = FINISHED.includes(j.status);
    drawCurve(p);
  }

  $("cancel-form").addEventListener("submit", (event) => {
    if (!window.confirm(`Cancel training job ${job.id}? Nothing is registered and the active model stays.`)) {
      event.preventDefault();
    }
  });

  render(job);
  window.addEventListener("resize", () => drawCurve(job.progress || {}));
  if (FINISHED.includes(job.status) || !window.EventSource) return;
  const source = new EventSource(`/api/v1/training-jobs/${job.id}/events`);
  source.addEventListener("progress", (e) => render(JSON.parse(e.data)));
  source.addEventListener("end", () => source.close());
  source.onopen = () => { document.body.dataset.stream = "open"; };
  source.onerror = () => { document.body.dataset.stream = "error"; };
})();
