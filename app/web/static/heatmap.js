// The patch heatmap's colour scale: a fixed 0-1 map (matplotlib's magma, a perceptually
// uniform scale that stays readable in grey print and for red-green colour blindness), fully
// transparent below a floor so a slice the model finds clean looks clean, and a legend with
// the threshold marked. The same probability is the same colour on every slice and series.
"use strict";
(function () {
  // magma sampled at 0, 1/8, ..., 1 (matplotlib), interpolated linearly between
  const MAGMA = [[0, 0, 4], [28, 16, 68], [79, 18, 123], [129, 37, 129], [181, 54, 122],
    [229, 80, 100], [251, 135, 97], [254, 194, 135], [252, 253, 191]];

  function colour(p) {
    const x = Math.max(0, Math.min(1, p)) * (MAGMA.length - 1), i = Math.min(MAGMA.length - 2, Math.floor(x));
    const t = x - i, a = MAGMA[i], b = MAGMA[i + 1];
    return [0, 1, 2].map((k) => Math.round(a[k] + t * (b[k] - a[k])));
  }

  // opacity of a patch: none below the floor, then rising to full at p = 1
  function alpha(p, floor) {
    if (p < floor) return 0;
    return 0.45 + 0.55 * (floor >= 1 ? 1 : (p - floor) / (1 - floor));
  }

  // draw the (rows, cols) patch probabilities over a width x height canvas context
  function paint(ctx, map, width, height, { floor, grid }) {
    ctx.clearRect(0, 0, width, height);
    if (!map || !map.length) return;
    const rows = map.length, cols = map[0].length;
    const cells = document.createElement("canvas");
    cells.width = cols; cells.height = rows;
    const cctx = cells.getContext("2d"), img = cctx.createImageData(cols, rows);
    map.forEach((row, r) => row.forEach((p, c) => {
      const j = (r * cols + c) * 4, [R, G, B] = colour(p);
      img.data[j] = R; img.data[j + 1] = G; img.data[j + 2] = B;
      img.data[j + 3] = Math.round(alpha(p, floor) * 255);
    }));
    cctx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;  // one block per patch: the model scored patches
    ctx.drawImage(cells, 0, 0, width, height);
    if (!grid) return;
    ctx.strokeStyle = "rgba(255, 255, 255, 0.35)";
    ctx.lineWidth = Math.max(1, width / 512);
    ctx.beginPath();
    for (let c = 1; c < cols; c++) { const x = (c * width) / cols; ctx.moveTo(x, 0); ctx.lineTo(x, height); }
    for (let r = 1; r < rows; r++) { const y = (r * height) / rows; ctx.moveTo(0, y); ctx.lineTo(width, y); }
    ctx.stroke();
  }

  // the scale as an SVG: the colour bar 0-1, the transparent part below the floor hatched,
  // the threshold marked
  function legend(svg, threshold, floor) {
    const NS = "http://www.w3.org/2000/svg", w = 300, h = 46, pad = 8, bar = 14;
    const x = (p) => pad + p * (w - 2 * pad);
    const el = (name, attrs, text) => {
      const node = document.createElementNS(NS, name);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      if (text !== undefined) node.textContent = text;
      return node;
    };
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.innerHTML = "";
    const defs = el("defs", {}), grad = el("linearGradient", { id: "magma", x1: "0", x2: "1", y1: "0", y2: "0" });
    MAGMA.forEach((c, i) => grad.appendChild(el("stop", {
      offset: `${(100 * i) / (MAGMA.length - 1)}%`, "stop-color": `rgb(${c.join(",")})` })));
    const hatch = el("pattern", { id: "hatch", width: "6", height: "6", patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)" });
    hatch.appendChild(el("rect", { width: "6", height: "6", fill: "#1b2027" }));
    hatch.appendChild(el("line", { x1: "0", y1: "0", x2: "0", y2: "6", stroke: "#a9b3bf", "stroke-width": "1.5" }));
    defs.append(grad, hatch);
    svg.appendChild(defs);
    svg.appendChild(el("rect", { x: pad, y: 4, width: w - 2 * pad, height: bar, fill: "url(#magma)", class: "bar" }));
    svg.appendChild(el("rect", { x: pad, y: 4, width: x(floor) - pad, height: bar, fill: "url(#hatch)",
      class: "floor" }, undefined));
    svg.appendChild(el("line", { x1: x(threshold), x2: x(threshold), y1: 1, y2: bar + 7, class: "thr-mark" }));
    [0, 0.5, 1].forEach((p) => svg.appendChild(el("text", { x: x(p), y: h - 14,
      "text-anchor": p === 0 ? "start" : p === 1 ? "end" : "middle" }, p.toFixed(1))));
    svg.appendChild(el("text", { x: Math.min(w - pad, Math.max(pad, x(threshold))), y: h - 2,
      "text-anchor": threshold > 0.75 ? "end" : threshold < 0.25 ? "start" : "middle", class: "thr-text" },
    `threshold ${threshold.toFixed(2)}`));
    svg.appendChild(el("title", {}, `Patch artifact probability, 0 to 1 (magma). Transparent below ` +
      `${floor.toFixed(2)}. A slice is flagged when its probability (from its patches) reaches the ` +
      `threshold ${threshold.toFixed(2)}.`));
  }

  window.amaqcHeat = { colour, alpha, paint, legend };
})();
