// The arxiv-stream page: plain JavaScript over the JSON API, no build step, no CDN.
"use strict";

const TOKEN_KEY = "arxiv-stream-token";
const POLL_MS = 3000;
const COLORS = ["#2f6fd6", "#e07b39", "#3a9d5d", "#b34f9b", "#c9a227", "#5a6acf", "#d04a4a", "#2aa1a6", "#7a7a7a"];

// fetch JSON from the API; with API_TOKEN set on the server, ask once and remember it.
async function api(path, options = {}, retried = false) {
  const headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 && !retried) {
    const given = window.prompt("This arxiv-stream API asks for a token:");
    if (given) {
      localStorage.setItem(TOKEN_KEY, given.trim());
      return api(path, options, true);
    }
  }
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || "");
    throw new Error((body.error || response.statusText) + (detail ? ": " + detail : ""));
  }
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

const pct = (x) => (100 * x).toFixed(1) + "%";
const paperLink = (id) => el("a", { href: "/papers/" + id }, id);

// --- classify ---------------------------------------------------------------------------
function bars(list, scored) {
  list.replaceChildren(...scored.map((s, i) => el("li", { class: i === 0 ? "winner" : "" },
    el("span", { class: "label", title: s.label }, (i === 0 ? "★ " : "") + s.label),
    el("span", { class: "track" }, el("span", { class: "fill", style: `width:${pct(s.score)}` })),
    el("span", { class: "score" }, pct(s.score)))));
}

async function classify(event) {
  if (event) event.preventDefault();
  const button = document.getElementById("classify-button");
  const status = document.getElementById("classify-status");
  const abstract = document.getElementById("abstract").value;
  if (!abstract.trim()) { status.textContent = "paste an abstract first"; return; }
  button.disabled = true;
  status.textContent = "classifying…";
  try {
    const result = await api("/api/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ title: document.getElementById("title").value, abstract, top_k: 5 }),
    });
    document.getElementById("verdict-domain").textContent = result.domain.label;
    document.getElementById("verdict-category").textContent = result.category.label;
    document.getElementById("verdict-score").textContent =
      `(${pct(result.category.score)}; domain ${pct(result.domain.score)}; model ${result.model_version})`;
    bars(document.getElementById("domain-bars"), result.domain_top_k);
    bars(document.getElementById("category-bars"), result.category_top_k);
    document.getElementById("result").hidden = false;
    status.textContent = "";
  } catch (error) {
    status.textContent = error.message;
    status.className = "error";
  } finally {
    button.disabled = false;
  }
}

// --- tables of papers -----------------------------------------------------------------------
function paperRow(p, fresh) {
  const declared = (p.categories || []).join(" ");
  return el("tr", { class: fresh ? "fresh" : "" },
    el("td", {}, paperLink(p.arxiv_id)), el("td", {}, p.title), el("td", {}, p.domain),
    el("td", {}, p.category), el("td", { class: "num" }, pct(p.category_score)),
    el("td", { class: p.agrees_with_declared === false ? "error" : "" }, declared));
}

const seen = new Set();
async function refreshLatest() {
  const live = document.getElementById("latest-live");
  try {
    const page = await api("/api/papers?limit=20");
    const first = seen.size === 0;
    document.getElementById("latest-rows").replaceChildren(...page.papers.map((p) => {
      const key = p.arxiv_id + "/" + p.model_version;
      const fresh = !first && !seen.has(key);
      seen.add(key);
      return paperRow(p, fresh);
    }));
    live.textContent = "live, every " + POLL_MS / 1000 + " s";
  } catch (error) {
    live.textContent = error.message;
  }
}

async function refreshModeration() {
  const minScore = document.getElementById("min-score").value || "0.7";
  try {
    const page = await api(`/api/papers?disagree=true&min_score=${encodeURIComponent(minScore)}&limit=50`);
    document.getElementById("moderate-rows").replaceChildren(...page.papers.map((p) => paperRow(p, false)));
  } catch (error) {
    document.getElementById("moderate-rows").replaceChildren(el("tr", {}, el("td", { class: "error" }, error.message)));
  }
}

// --- chart: stacked bars, one per day ------------------------------------------------------
async function refreshChart() {
  const box = document.getElementById("chart-box");
  let stats;
  try { stats = await api("/api/stats?days=30"); } catch (error) { box.textContent = error.message; return; }
  const rows = stats.labels_per_domain_per_day;
  if (!rows.length) { box.textContent = "no labels yet"; return; }
  const days = [...new Set(rows.map((r) => r.day))].sort();
  const domains = [...new Set(rows.map((r) => r.domain))].sort();
  const totals = Object.fromEntries(days.map((d) => [d, 0]));
  rows.forEach((r) => { totals[r.day] += r.papers; });
  const max = Math.max(...Object.values(totals));
  const W = 900, H = 260, pad = 36, bw = Math.min(48, Math.max(4, (W - 2 * pad) / days.length - 4));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  days.forEach((day, i) => {
    let y = H - pad;
    const x = pad + i * ((W - 2 * pad) / days.length);
    domains.forEach((domain, j) => {
      const row = rows.find((r) => r.day === day && r.domain === domain);
      if (!row) return;
      const h = (row.papers / max) * (H - 2 * pad);
      const rect = document.createElementNS(ns, "rect");
      Object.entries({ x, y: y - h, width: bw, height: h, fill: COLORS[j % COLORS.length] })
        .forEach(([k, v]) => rect.setAttribute(k, v));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${day} ${domain}: ${row.papers}`;
      rect.append(title);
      svg.append(rect);
      y -= h;
    });
    const label = document.createElementNS(ns, "text");
    Object.entries({ x: x + bw / 2, y: H - pad + 14, "text-anchor": "middle", "font-size": 10 })
      .forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = day.slice(5);
    svg.append(label);
  });
  const legend = el("div", { class: "legend" }, ...domains.map((d, j) =>
    el("span", {}, el("i", { style: `background:${COLORS[j % COLORS.length]}` }), d)));
  box.replaceChildren(svg, legend);
}

// --- a paper's page -----------------------------------------------------------------------------
async function showPaper(id) {
  document.getElementById("home").hidden = true;
  document.getElementById("paper").hidden = false;
  try {
    const found = await api("/api/papers/" + id);
    const p = found.paper;
    document.title = p.title + " — arxiv-stream";
    document.getElementById("paper-title").textContent = p.title;
    document.getElementById("paper-meta").textContent =
      `${p.arxiv_id}v${p.version} · declared ${(p.categories || []).join(", ")} · ${p.updated || p.submitted || ""}`;
    document.getElementById("paper-abstract").textContent = p.abstract || "";
    document.getElementById("paper-labels").replaceChildren(...found.labels.map((l) => el("tr", {},
      el("td", {}, "v" + l.version), el("td", {}, l.model_version), el("td", {}, l.domain),
      el("td", {}, l.category), el("td", { class: "num" }, pct(l.category_score)), el("td", {}, l.labelled_at))));
  } catch (error) {
    document.getElementById("paper-title").textContent = error.message;
    return;
  }
  const list = document.getElementById("paper-similar");
  try {
    const similar = await api(`/api/papers/${id}/similar?k=10`);
    if (!similar.embedded) { list.replaceChildren(el("li", { class: "muted" }, "not embedded yet")); return; }
    list.replaceChildren(...similar.similar.map((s) => el("li", {}, paperLink(s.arxiv_id), " ",
      s.title || "", " ", el("span", { class: "muted" }, `(${s.category || "?"}, ${s.similarity.toFixed(3)})`))));
  } catch (error) {
    list.replaceChildren(el("li", { class: "muted" }, error.message));
  }
}

async function showModel() {
  try {
    const models = await api("/api/models");
    document.getElementById("model").textContent = models.promoted ? "model " + models.promoted : "no model promoted";
  } catch (error) {
    document.getElementById("model").textContent = error.message;
  }
}

function start() {
  showModel();
  const paper = window.location.pathname.match(/^\/papers\/(.+)$/);
  if (paper) { showPaper(decodeURIComponent(paper[1])); return; }
  document.getElementById("classify-form").addEventListener("submit", classify);
  document.getElementById("abstract").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) classify(event);
  });
  document.getElementById("min-score").addEventListener("change", refreshModeration);
  refreshLatest();
  refreshChart();
  refreshModeration();
  setInterval(refreshLatest, POLL_MS);
  setInterval(refreshChart, 10 * POLL_MS);
}

start();
