// vesselzip result pages: sortable tables and live progress. The pages work
// without this script; it only adds sorting and updates while work runs.
"use strict";

function cellValue(cell) {
  const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent;
  const number = parseFloat(raw);
  return Number.isNaN(number) ? raw.trim().toLowerCase() : number;
}

function sortBy(table, column, header) {
  const body = table.tBodies[0];
  const ascending = !header.classList.contains("sorted-asc");
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellValue(a.cells[column]);
    const y = cellValue(b.cells[column]);
    if (typeof x === "number" && typeof y === "number") return ascending ? x - y : y - x;
    return ascending ? String(x).localeCompare(String(y)) : String(y).localeCompare(String(x));
  });
  rows.forEach((row) => body.appendChild(row));
  table.querySelectorAll("th").forEach((th) => th.classList.remove("sorted-asc", "sorted-desc"));
  header.classList.add(ascending ? "sorted-asc" : "sorted-desc");
}

function makeSortable(table) {
  const headers = table.tHead ? table.tHead.rows[0].cells : [];
  Array.from(headers).forEach((header, column) => {
    header.addEventListener("click", () => sortBy(table, column, header));
  });
}

function followProgress(box) {
  const url = box.dataset.progressUrl;
  const bar = box.querySelector("progress");
  const text = box.querySelector("#progress-text");
  const state = box.querySelector("#progress-state");
  async function poll() {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const p = await response.json();
        if (p.total !== undefined) {
          bar.max = p.total;
          bar.value = p.done;
          let words = `${p.done}/${p.total} jobs done`;
          if (p.eta_s !== null && p.eta_s !== undefined && !p.ended) words += `, about ${Math.round(p.eta_s)} s left`;
          text.textContent = words;
        } else {
          bar.value = p.fraction;
          text.textContent = p.text;
        }
        if (state && p.state) state.textContent = p.state;
        if (p.ended) { window.location.reload(); return; }
      }
    } catch (error) { /* the gateway restarting: try again */ }
    setTimeout(poll, 1000);
  }
  setTimeout(poll, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  document.querySelectorAll("[data-progress-url]").forEach(followProgress);
});
