// Series viewer: slice strip, large view with window/level on the raw pixel values (default
// from the DICOM window, else percentiles), the patch heatmap (heatmap.js), probability chart,
// keyboard and mouse as in DICOM viewers (wheel = slices, drag = window/level, double-click =
// reset), and the review form (review.js).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("series-data").textContent);
  const slices = data.slices;
  const $ = (id) => document.getElementById(id);
  const stage = $("stage"), imageCanvas = $("image"), heatCanvas = $("heat");
  const state = { index: 0, heat: true, opacity: 0.8, floor: 0.3, grid: false, lo: null, hi: null,
    range: null, labels: {} };
  const pixelCache = new Map();
  const threshold = data.verdict ? data.verdict.threshold : 0.5;

  // --- pixels and window/level -------------------------------------------------------
  async function pixels(slice) {
    if (!pixelCache.has(slice.id)) {
      pixelCache.set(slice.id, fetch(slice.pixels_url, { credentials: "same-origin" }).then(async (r) => {
        if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
        const [rows, cols] = r.headers.get("X-Amaqc-Shape").split(",").map(Number);
        const named = r.headers.get("X-Amaqc-Window");  // the DICOM WindowCenter, WindowWidth
        const window = named ? named.split(",").map(Number) : null;
        return { rows, cols, window, values: new Float32Array(await r.arrayBuffer()) };
      }));
    }
    return pixelCache.get(slice.id);
  }

  function percentiles(values, lowP, highP) {
    const step = Math.max(1, Math.floor(values.length / 20000));
    const sample = [];
    for (let i = 0; i < values.length; i += step) sample.push(values[i]);
    sample.sort((a, b) => a - b);
    const at = (p) => sample[Math.min(sample.length - 1, Math.floor(p * (sample.length - 1)))];
    return [at(lowP), at(highP)];
  }

  // the slice's own window: the DICOM header's WindowCenter/WindowWidth when it names one,
  // else the 0.5-99.5 percentiles of its values
  function defaultWindow(px) {
    const [min, max] = percentiles(px.values, 0, 1);
    let lo, hi;
    if (px.window) {
      const [center, width] = px.window;
      lo = center - width / 2; hi = center + width / 2; state.wlSource = "DICOM";
    } else {
      [lo, hi] = percentiles(px.values, 0.005, 0.995); state.wlSource = "auto";
      if (hi <= lo) hi = lo + 1;
    }
    state.range = [Math.min(min, lo), Math.max(max > min ? max : min + 1, hi)];
    state.lo = lo; state.hi = hi;
    syncSliders();
  }

  function syncSliders() {
    const [min, max] = state.range, span = max - min;
    $("ww").value = Math.round(((state.hi - state.lo) / span) * 1000);
    $("wl").value = Math.round((((state.hi + state.lo) / 2 - min) / span) * 1000);
    const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
    $("wl-info").textContent = `W ${fmt(state.hi - state.lo)} / L ${fmt((state.hi + state.lo) / 2)} (${state.wlSource})`;
    stage.dataset.window = `${state.hi - state.lo},${(state.hi + state.lo) / 2}`;
  }

  function setWindow(width, level) {
    const span = state.range[1] - state.range[0];
    width = Math.max(span / 1000, width);
    state.lo = level - width / 2; state.hi = level + width / 2; state.wlSource = "adjusted";
    syncSliders();
    redraw();
  }

  function slidersToWindow() {
    const [min, max] = state.range, span = max - min;
    setWindow(Math.max(1, Number($("ww").value)) / 1000 * span, min + (Number($("wl").value) / 1000) * span);
  }

  async function resetWindow() {
    defaultWindow(await pixels(slices[state.index]));
    draw();
  }

  let pending = false;  // one redraw per animation frame while dragging
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  }

  // --- drawing -----------------------------------------------------------------------
  async function draw() {
    const slice = slices[state.index];
    let px;
    try { px = await pixels(slice); } catch (err) { $("slice-info").textContent = "cannot load slice: " + err.message; return; }
    if (slice !== slices[state.index]) return;  // another slice was selected meanwhile
    if (state.lo === null) defaultWindow(px);
    imageCanvas.width = heatCanvas.width = px.cols;
    imageCanvas.height = heatCanvas.height = px.rows;
    const ctx = imageCanvas.getContext("2d");
    const img = ctx.createImageData(px.cols, px.rows);
    const scale = 255 / (state.hi - state.lo);
    for (let i = 0, j = 0; i < px.values.length; i++, j += 4) {
      const v = Math.max(0, Math.min(255, (px.values[i] - state.lo) * scale));
      img.data[j] = img.data[j + 1] = img.data[j + 2] = v; img.data[j + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    drawHeat(slice, px);
  }

  function drawHeat(slice, px) {
    // patch probabilities on the fixed 0-1 scale of heatmap.js, stretched over the slice
    window.amaqcHeat.paint(heatCanvas.getContext("2d"), slice.patch_map, px.cols, px.rows,
      { floor: state.floor, grid: state.grid });
  }

  function showHeat() {
    heatCanvas.style.opacity = state.heat ? state.opacity : 0;
    $("heat-toggle").checked = state.heat;
    stage.dataset.heat = state.heat ? "on" : "off";
  }

  function info() {
    const s = slices[state.index];
    const p = s.probability === null ? "not scored" : `p = ${s.probability.toFixed(2)} (${s.label})`;
    const mine = state.labels[s.id] ? ` · your label: ${state.labels[s.id].label}` : "";
    $("slice-info").textContent = `Slice ${state.index + 1} / ${slices.length}` +
      (s.number !== null ? ` · InstanceNumber ${s.number}` : "") + ` · ${p}${mine}`;
  }

  // --- slice strip and chart -----------------------------------------------------------
  const thumbs = slices.map((s, i) => {
    const t = document.createElement("button");
    t.type = "button"; t.className = "thumb" + (s.label === "artifact" ? " flag" : "");
    t.setAttribute("role", "option"); t.dataset.index = i;
    t.innerHTML = `<img loading="lazy" alt="slice ${s.name}" src="${s.image_url}">` +
      `<span>${s.name} · ${s.probability === null ? "–" : s.probability.toFixed(2)}</span>` +
      `<span class="lab"></span>`;
    t.title = `slice ${s.name}` + (s.number !== null ? " (InstanceNumber)" : " (position)") +
      (s.probability === null ? ": not scored" : `: probability ${s.probability.toFixed(2)}`);
    t.addEventListener("click", () => select(i));
    $("strip").appendChild(t);
    return t;
  });

  const svgNS = "http://www.w3.org/2000/svg";
  function chart() {
    const svg = $("chart"), w = 320, h = 110, pad = 12;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.innerHTML = "";
    const bw = (w - 2 * pad) / Math.max(1, slices.length);
    const y = (p) => h - pad - p * (h - 2 * pad);
    slices.forEach((s, i) => {
      const p = s.probability || 0, r = document.createElementNS(svgNS, "rect");
      r.setAttribute("x", pad + i * bw + 1); r.setAttribute("width", Math.max(1, bw - 2));
      r.setAttribute("y", y(p)); r.setAttribute("height", Math.max(1, y(0) - y(p)));
      r.setAttribute("class", "bar" + (s.label === "artifact" ? " flag" : "") + (i === state.index ? " sel" : ""));
      const title = document.createElementNS(svgNS, "title");
      title.textContent = `slice ${s.name}: ${s.probability === null ? "not scored" : s.probability.toFixed(3)}`;
      r.appendChild(title);
      r.addEventListener("click", () => select(i));
      svg.appendChild(r);
    });
    const line = document.createElementNS(svgNS, "line");
    line.setAttribute("x1", pad); line.setAttribute("x2", w - pad);
    line.setAttribute("y1", y(threshold)); line.setAttribute("y2", y(threshold));
    line.setAttribute("class", "thr"); svg.appendChild(line);
    const label = document.createElementNS(svgNS, "text");
    label.setAttribute("x", w - pad); label.setAttribute("y", y(threshold) - 3);
    label.setAttribute("text-anchor", "end"); label.textContent = `threshold ${threshold.toFixed(2)}`;
    svg.appendChild(label);
  }

  function select(i) {
    state.index = Math.max(0, Math.min(slices.length - 1, i));
    stage.dataset.index = state.index;
    thumbs.forEach((t, j) => { t.classList.toggle("sel", j === state.index); t.setAttribute("aria-selected", j === state.index); });
    const strip = $("strip"), t = thumbs[state.index];  // keep the selected thumb in view
    strip.scrollTo({ top: t.offsetTop - (strip.clientHeight - t.offsetHeight) / 2,
      left: t.offsetLeft - (strip.clientWidth - t.offsetWidth) / 2 });
    chart(); info(); draw();
    if (window.amaqcQuality) window.amaqcQuality.render($("quality-metrics"), slices[state.index]);
  }

  // --- controls and keys ----------------------------------------------------------------
  $("heat-toggle").addEventListener("change", (e) => { state.heat = e.target.checked; showHeat(); });
  $("grid-toggle").addEventListener("change", (e) => { state.grid = e.target.checked; draw(); });
  $("floor").addEventListener("input", (e) => {
    state.floor = Number(e.target.value) / 100;
    $("floor-value").textContent = state.floor.toFixed(2);
    window.amaqcHeat.legend($("heat-legend"), threshold, state.floor); draw();
  });
  $("opacity").addEventListener("input", (e) => { state.opacity = Number(e.target.value) / 100; state.heat = true; showHeat(); });
  $("ww").addEventListener("input", slidersToWindow);
  $("wl").addEventListener("input", slidersToWindow);
  $("wl-auto").addEventListener("click", resetWindow);
  document.querySelectorAll("[data-slice-index]").forEach((b) =>
    b.addEventListener("click", () => select(Number(b.dataset.sliceIndex))));

  // --- mouse, as in every DICOM viewer: wheel = slices, drag = window/level, double-click = reset
  let wheelTravel = 0;
  stage.addEventListener("wheel", (event) => {
    event.preventDefault();  // the page does not scroll under the slice
    const unit = event.deltaMode === 1 ? 40 : event.deltaMode === 2 ? 800 : 1;
    const delta = event.deltaY * unit;
    if (Math.abs(delta) >= 50) { wheelTravel = 0; select(state.index + Math.sign(delta)); return; }
    wheelTravel += delta;  // a touchpad's small steps add up to one slice
    if (Math.abs(wheelTravel) >= 100) { select(state.index + Math.sign(wheelTravel)); wheelTravel = 0; }
  }, { passive: false });

  let drag = null;
  stage.addEventListener("pointerdown", (event) => {
    if ((event.button !== 0 && event.button !== 2) || state.range === null) return;
    drag = { x: event.clientX, y: event.clientY, width: state.hi - state.lo,
      level: (state.hi + state.lo) / 2, moved: false };
    stage.setPointerCapture(event.pointerId);
  });
  stage.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 3) return;  // a click, not a drag
    drag.moved = true;
    // across the whole view: the whole value range; right = wider window, down = higher level
    const box = stage.getBoundingClientRect(), span = state.range[1] - state.range[0];
    setWindow(drag.width + (dx / box.width) * span, drag.level + (dy / box.height) * span);
  });
  for (const type of ["pointerup", "pointercancel"]) stage.addEventListener(type, () => { drag = null; });
  stage.addEventListener("contextmenu", (event) => event.preventDefault());  // right-drag
  stage.addEventListener("dblclick", (event) => { event.preventDefault(); resetWindow(); });

  document.addEventListener("keydown", (event) => {
    const t = event.target;
    if (t.closest && t.closest("textarea, select, input:not([type=checkbox]):not([type=radio])")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const run = keys[event.key];
    if (run) { event.preventDefault(); run(); }
  });
  const keys = {
    ArrowRight: () => select(state.index + 1), ArrowDown: () => select(state.index + 1),
    ArrowLeft: () => select(state.index - 1), ArrowUp: () => select(state.index - 1),
    Home: () => select(0), End: () => select(slices.length - 1),
    h: () => { state.heat = !state.heat; showHeat(); },
    r: resetWindow,
  };

  // the review form (review.js) labels slices and adds its keys
  window.amaqcViewer = { data, slices, state, thumbs, keys, info, $ };
  document.addEventListener("DOMContentLoaded", () => {
    if (!slices.length) { $("slice-info").textContent = "This series has no slices."; return; }
    const firstFlagged = slices.findIndex((s) => s.label === "artifact");
    $("opacity").value = state.opacity * 100;
    $("floor").value = state.floor * 100; $("floor-value").textContent = state.floor.toFixed(2);
    window.amaqcHeat.legend($("heat-legend"), threshold, state.floor);
    showHeat();
    select(firstFlagged >= 0 ? firstFlagged : 0);
  });
})();
