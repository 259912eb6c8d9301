// The metavec web console: plain JS over the HTTP API (no framework, no build step). The API key,
// when the server asks for one, lives in this tab's sessionStorage only.
"use strict";

const KEY = "metavec-api-key";
const $ = (id) => document.getElementById(id);
let current = null; // the collection in the playground
let budgets = []; // its servable budgets, [[r_q, r_c], ...]

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// Calls the API; a 401 shows the key form and throws.
async function api(method, path, body) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["Authorization"] = "Bearer " + key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 401) {
    $("auth").hidden = false;
    $("key").focus();
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = data && data.error ? data.error : { code: String(res.status), message: res.statusText };
    throw new Error(e.code + ": " + e.message);
  }
  return data;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

const fmtBudget = (b) => b[0] + "x" + b[1];

async function loadCollections() {
  let list;
  try {
    list = await api("GET", "/v1/collections");
  } catch (e) {
    status(e.message, true);
    return;
  }
  $("auth").hidden = true;
  status("");
  const body = $("collections").tBodies[0];
  body.replaceChildren();
  $("no-collections").hidden = list.collections.length > 0;
  for (const c of list.collections) {
    const tr = document.createElement("tr");
    tr.dataset.name = c.name;
    cell(tr, c.name);
    cell(tr, c.live_docs, "num");
    cell(tr, c.dim, "num");
    cell(tr, c.stored_vectors + " / " + c.doc_vectors, "num");
    cell(tr, c.dtype);
    cell(tr, c.segments.length, "num");
    cell(tr, c.budgets.map(fmtBudget).join(" "));
    tr.addEventListener("click", () => choose(c, tr));
    body.appendChild(tr);
    if (current && current.name === c.name) tr.classList.add("selected");
  }
  if (!current && list.collections.length > 0) choose(list.collections[0], body.rows[0]);
  loadPlot();
}

function choose(c, tr) {
  current = c;
  for (const r of $("collections").tBodies[0].rows) r.classList.toggle("selected", r === tr);
  budgets = c.servable_budgets.length ? c.servable_budgets : c.budgets;
  const slider = $("budget");
  slider.max = String(Math.max(budgets.length - 1, 0));
  slider.value = "0";
  showBudget();
  $("pg-collection").textContent = "in " + c.name;
  $("playground").hidden = false;
}

function showBudget() {
  const b = budgets[Number($("budget").value)];
  $("budget-label").textContent = b ? fmtBudget(b) : "";
}

async function search() {
  const id = $("query-id").value.trim();
  if (!current || !id) return;
  const b = budgets[Number($("budget").value)];
  const req = { query_id: id, budget: b, k: Number($("k").value) || 10, with_payload: $("with-payload").checked };
  status("searching " + current.name + " at " + fmtBudget(b) + " ...");
  let r;
  try {
    r = await api("POST", "/v1/collections/" + encodeURIComponent(current.name) + "/search", req);
  } catch (e) {
    status(e.message, true);
    return;
  }
  status(r.hits.length + " hits at " + fmtBudget(r.budget) + " in " + r.stats.total_us + " us");
  const hits = $("hits").tBodies[0];
  hits.replaceChildren();
  r.hits.forEach((h, i) => {
    const tr = document.createElement("tr");
    cell(tr, i + 1, "num");
    cell(tr, h.id);
    cell(tr, h.score.toFixed(4), "num");
    cell(tr, h.payload === undefined ? "" : JSON.stringify(h.payload), "payload");
    hits.appendChild(tr);
  });
  const stats = $("stats").tBodies[0];
  stats.replaceChildren();
  for (const [k, v] of Object.entries(r.stats)) {
    if (k === "stages") continue;
    const tr = document.createElement("tr");
    cell(tr, k);
    cell(tr, v, "num");
    stats.appendChild(tr);
  }
  const stages = $("stages").tBodies[0];
  stages.replaceChildren();
  for (const s of r.stats.stages) {
    const tr = document.createElement("tr");
    cell(tr, fmtBudget(s.budget));
    for (const v of [s.scored, s.pruned, s.dot_products, s.vector_bytes_read, s.kept]) cell(tr, v, "num");
    stages.appendChild(tr);
  }
  $("hits").dataset.budget = fmtBudget(r.budget);
}

// The plot is fetched with the key (an <img src> could not send it) and shown from a blob.
async function loadPlot() {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["Authorization"] = "Bearer " + key;
  const res = await fetch("/v1/console/bench-plot", { headers }).catch(() => null);
  if (!res || res.status !== 200) return;
  const url = URL.createObjectURL(await res.blob());
  const img = document.createElement("img");
  img.id = "plot-img";
  img.alt = "recall and latency per budget, from metavec bench --plot";
  img.src = url;
  $("plot").replaceChildren(img);
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const k = $("key").value.trim();
  if (k) sessionStorage.setItem(KEY, k);
  $("key").value = "";
  loadCollections();
});
$("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  status("key forgotten");
});
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  search();
});
$("budget").addEventListener("input", showBudget);
$("budget").addEventListener("change", search);

loadCollections();
