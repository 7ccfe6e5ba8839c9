// Worklist: rows open their series; server-sent events insert or update rows without a reload.
"use strict";
(function () {
  const table = document.getElementById("worklist");
  const body = table.tBodies[0];
  const live = document.getElementById("live");
  const empty = document.getElementById("empty");

  body.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-href]");
    if (row && !event.target.closest("a")) window.location.href = row.dataset.href;
  });

  function place(row) {
    // newest (highest id) first
    const id = Number(row.dataset.id);
    const old = document.getElementById(row.id);
    if (old) { old.replaceWith(row); return; }
    const after = Array.from(body.rows).find((r) => Number(r.dataset.id) < id);
    body.insertBefore(row, after || null);
    row.classList.add("new");
  }

  function upsert(data) {
    const tmp = document.createElement("tbody");
    tmp.innerHTML = data.html.trim();
    place(tmp.firstElementChild);
    empty.hidden = body.rows.length > 0;
  }

  function remove(data) {
    const old = document.getElementById("series-" + data.id);
    if (old) old.remove();
    empty.hidden = body.rows.length > 0;
  }

  if (table.dataset.live !== "1" || !window.EventSource) {
    live.textContent = "Sorted or older page: not updated live (reload for news) · times in UTC";
    return;
  }
  const query = new URLSearchParams(window.location.search);
  query.set("since", table.dataset.since);
  const source = new EventSource("/worklist/events?" + query.toString());
  source.addEventListener("upsert", (e) => upsert(JSON.parse(e.data)));
  source.addEventListener("remove", (e) => remove(JSON.parse(e.data)));
  source.onopen = () => { live.textContent = "Updates live · times in UTC"; table.dataset.stream = "open"; };
  source.onerror = () => { live.textContent = "Reconnecting to live updates…"; table.dataset.stream = "error"; };
})();
