// The review queue page: one item at a time (the next in the queue, or /items/ID), the facts a
// reviewer decides by beside it, and every action on a key. Boxes are drawn by boxes.js.
// Item data is put into the page with textContent and attributes only (never innerHTML).
import { BoxEditor } from "./boxes.js";

const $ = (id) => document.getElementById(id);
const main = document.querySelector("main.queue");
const CLASSES = JSON.parse(main.dataset.classes);
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const REASON_KEYS = [...document.querySelectorAll("#reasons button")].map((b) => b.dataset.reason);
const state = { item: null, edited: false, skipped: [], busy: false, undoable: null, picking: false, other: false };
const boxes = new BoxEditor($("boxes"), CLASSES, (edited) => { if (edited) state.edited = true; draw(); });

function classIdOf(label) { return CLASSES.find((k) => k.label === label).id; }

async function call(path, body, method = "POST") {
  const init = { method, credentials: "same-origin", headers: { "x-csrf-token": CSRF } };
  if (method === "POST") { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body || {}); }
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

function say(text, bad) { const m = $("message"); m.textContent = text; m.className = bad ? "error" : ""; }
function threshold(v) { return v === null || v === undefined ? "-" : v.toFixed(2); }
function when(iso) { return iso ? iso.slice(0, 16).replace("T", " ") + " UTC" : ""; }

function showCounts(c, skipped) {
  if (!c) return;
  const mine = skipped ? `, ${skipped} skipped by you` : "";
  $("counts").textContent = `${c.queued_flag} flagged, ${c.queued_review} to review${mine}, ${c.decided} decided`;
}

function showEmpty(data) {
  const parts = [];
  if (data.skipped) parts.push(`${data.skipped} you skipped`);
  if (data.held_by_others) parts.push(`${data.held_by_others} held by other reviewers`);
  $("empty-text").textContent = parts.length ? `Nothing for you right now: ${parts.join(", ")}.` : "The queue is empty.";
  $("unskip").hidden = !data.skipped;
}

function setUndo(id) {
  state.undoable = id;
  $("undo").disabled = !id;
  $("undo").title = id ? `undo your decision on item ${id} (U)` : "nothing of yours to undo";
}

function showListing(others) {
  const list = $("listing-items");
  list.replaceChildren();
  for (const o of others) {
    const a = document.createElement("a");
    a.href = o.page_url;
    a.title = `item ${o.id}: ${o.verdict}, ${o.decision || o.state}`;
    const img = document.createElement("img");
    img.src = o.image_url; img.alt = `item ${o.id}`; img.loading = "lazy";
    const caption = document.createElement("span");
    caption.textContent = `#${o.id} ${o.decision || o.state}`;
    a.append(img, caption);
    list.append(a);
  }
  $("listing-none").hidden = others.length > 0;
}

// "matches case C-123 in bank X, distance 12 (added 2026-12-01)", one line per known-image match
// ("similarity 0.97" where the embedding matched a crop or frame PDQ did not);
// the image-level head's scores beside their thresholds.
function showKnown(item) {
  const matches = item ? item.matches || [] : [], scores = item ? item.image_scores || [] : [];
  const list = $("matches");
  list.replaceChildren();
  for (const m of matches) {
    const li = document.createElement("li");
    const ref = m.reference_id ? `case ${m.reference_id}` : "an entry";
    const added = m.added ? ` (added ${m.added.slice(0, 10)})` : "";
    const how = m.signal === "embedding" && m.similarity != null ? `similarity ${m.similarity.toFixed(2)}`
      : `distance ${m.distance}`;
    li.textContent = `matches ${ref} in bank ${m.bank}, ${how}${added}`;
    const what = document.createElement("span");
    what.className = "muted";
    what.textContent = ` ${m.label || "?"}, ${m.action}, ${m.signal}`;
    li.append(what);
    list.append(li);
  }
  $("known").hidden = matches.length === 0;
  const ol = $("image-scores");
  ol.replaceChildren();
  for (const s of scores) {
    const li = document.createElement("li");
    const called = s.verdict === "REVIEW" || s.verdict === "FLAG";
    li.className = called ? "called" : "";
    li.textContent = `${s.label} ${s.score.toFixed(2)}`;
    const limits = document.createElement("span");
    limits.className = "thresholds";
    limits.textContent = ` review ${threshold(s.review_threshold)} / flag ${threshold(s.flag_threshold)}${called ? " \u2192 " + s.verdict : ""}`;
    li.append(limits);
    ol.append(li);
  }
  $("image-level").hidden = scores.length === 0;
  $("head").textContent = item && item.head ? `${item.head.name} ${item.head.version}` : "";
}

function show(data) {
  setUndo(data.undoable);
  const item = data.item;
  state.item = item; state.edited = false; pickReason(false);
  $("empty").hidden = !!item;
  $("stage").hidden = !item;
  $("note").value = "";
  for (const id of ["verdict", "position", "model", "listing", "request", "source", "arrived", "item-link", "state",
    "screen-decided-by", "banked-in"]) $(id).textContent = "";
  if (!item) { boxes.load(1, 1, [], [], true); showListing([]); showKnown(null); drawList(); return; }
  const box = (d) => ({ label: d.label, x_min: d.x_min, y_min: d.y_min, x_max: d.x_max, y_max: d.y_max, confidence: d.confidence ?? null,
    review_threshold: d.review_threshold ?? null, flag_threshold: d.flag_threshold ?? null, deciding: !!d.deciding });
  const decided = item.state === "decided";
  const mine = item.claimed_by === main.dataset.reviewer;
  const shown = decided ? (item.final_boxes || []).map(box) : item.detections.filter((d) => d.strong).map(box);
  const heat = (item.image_scores || []).filter((s) => s.heat_box && (s.verdict === "REVIEW" || s.verdict === "FLAG"))
    .map((s) => ({ label: s.label, score: s.score, ...s.heat_box }));
  boxes.load(item.width, item.height, shown, decided ? [] : item.detections.filter((d) => !d.strong).map(box), decided || !mine, heat);
  $("verdict").textContent = item.verdict;
  $("verdict").className = "verdict " + item.verdict.toLowerCase();
  $("position").textContent = data.position ? `item ${data.position.n} of ${data.position.of}` : "";
  $("model").textContent = `${item.model.name} ${item.model.version} (${item.model.sha256.slice(0, 12)})`;
  $("listing").textContent = item.listing_id;
  $("request").textContent = item.request_id;
  $("source").textContent = item.source_path || "-";
  $("arrived").textContent = when(item.arrived_at);
  $("screen-decided-by").textContent = item.screen_decided_by || "-";
  $("banked-in").textContent = item.banked_in ? `in bank ${item.banked_in}` : "-";
  showKnown(item);
  $("item-link").textContent = `#${item.id}`;
  $("item-link").href = item.page_url;
  $("state").textContent = decided ? `${item.decision}${item.reason ? " (" + item.reason.replace(/_/g, " ") + ")" : ""} by ${item.decided_by}`
    : mine ? "yours to decide" : item.claimed_by ? `held by ${item.claimed_by}` : "waiting";
  for (const action of ["confirm", "reject", "fix", "skip"]) $(action).disabled = decided || !mine;
  showListing(data.listing || []);
  const photo = $("photo");
  photo.onload = () => fit();
  photo.src = item.image_url;
  draw();
}

async function loadNext() {
  const data = await call("/api/next", { skip: state.skipped });
  showCounts(data.counts, data.skipped);
  if (!data.item) showEmpty(data);
  show(data);
}

async function openItem(id) {
  let data = await call(`/api/items/${id}`, null, "GET");
  if (data.item.state === "queued" && data.item.claimed_by !== main.dataset.reviewer) {
    try { data = await call(`/api/items/${id}/claim`); } catch (err) { say(err.message, true); }
  }
  show(data);
}

function fit() {
  if (!state.item) return;
  // The whole image in view, enlarged up to 3x where it is small.
  const wrap = $("stage").parentElement;
  const roomW = wrap.clientWidth - 16, roomH = window.innerHeight - wrap.getBoundingClientRect().top - 60;
  boxes.zoom = Math.min(3, roomW / state.item.width, Math.max(roomH, 200) / state.item.height) || 1;
  applyZoom();
}

function applyZoom() {
  const w = Math.round(state.item.width * boxes.zoom), h = Math.round(state.item.height * boxes.zoom);
  for (const el of [$("photo"), $("boxes"), $("stage")]) { el.style.width = w + "px"; el.style.height = h + "px"; }
  draw();
}

function draw() { if (state.item) boxes.draw(); drawList(); }

function drawList() {
  const list = $("box-list");
  list.replaceChildren();
  boxes.boxes.forEach((b, i) => {
    const li = document.createElement("li");
    li.className = i === boxes.selected ? "selected" : "";
    const select = document.createElement("select");
    select.setAttribute("aria-label", "class");
    for (const c of CLASSES) { const o = document.createElement("option"); o.value = c.label; o.textContent = c.label; select.append(o); }
    select.value = b.label;
    select.disabled = boxes.readOnly;
    select.addEventListener("change", () => { b.label = select.value; state.edited = true; draw(); });
    const conf = document.createElement("span");
    conf.className = "confidence";
    conf.textContent = b.confidence === null ? "added" : b.confidence.toFixed(2);
    const limits = document.createElement("span");
    limits.className = "thresholds";
    limits.textContent = b.confidence === null ? "" : `review ${threshold(b.review_threshold)} / flag ${threshold(b.flag_threshold)}`;
    li.append(select, " ", conf, " ", limits);
    if (b.deciding) { const d = document.createElement("span"); d.className = "deciding"; d.textContent = "\u2605 made the verdict"; li.append(" ", d); }
    if (!boxes.readOnly) {
      const del = document.createElement("button");
      del.textContent = "delete"; del.className = "delete";
      del.addEventListener("click", () => { boxes.selected = i; boxes.deleteSelected(); });
      li.append(" ", del);
    }
    li.addEventListener("click", () => { boxes.selected = i; draw(); });
    list.append(li);
  });
  $("edited").hidden = !state.edited;
  $("weak-note").textContent = boxes.weak.length
    ? `${boxes.weak.length} weaker box(es) below the review threshold: W ${boxes.showWeak ? "hides" : "shows"} them.` : "";
}

function pickReason(on) {
  state.picking = on; state.other = false;
  $("reasons").hidden = !on;
  if (on) say("Why reject? Press 1-4 (Esc: back).");
}

async function act(action, reason) {
  if (!state.item || state.busy || boxes.readOnly) return;
  if (action === "confirm" && state.edited) { say("You changed the boxes: press F to save them as a fix.", true); return; }
  if (action === "reject" && !reason) { pickReason(true); return; }
  if (reason === "other" && !$("note").value.trim()) {
    state.other = true; $("note").focus(); say("Other: write why in the note, then press Enter."); return;
  }
  state.busy = true;
  const body = { action, note: $("note").value };
  if (reason) body.reason = reason;
  if (action === "fix") body.boxes = boxes.boxes.map((b) => ({ label: b.label, class_id: classIdOf(b.label),
    x_min: b.x_min, y_min: b.y_min, x_max: b.x_max, y_max: b.y_max }));
  try {
    await call(`/api/items/${state.item.id}/decision`, body);
    if (action === "skip") state.skipped.push(state.item.id);
    say(`${action}${reason ? " (" + reason.replace(/_/g, " ") + ")" : ""}: item ${state.item.id} done${action === "skip" ? "" : " (U undoes it)"}`);
    await loadNext();
  } catch (err) { say(err.message, true); } finally { state.busy = false; }
}

async function undo() {
  if (!state.undoable || state.busy) return;
  state.busy = true;
  try {
    const data = await call(`/api/items/${state.undoable}/undo`);
    showCounts(data.counts, 0);
    say(`undone: item ${data.item.id} is back with you`);
    show(data);
  } catch (err) { say(err.message, true); } finally { state.busy = false; }
}

function onKey(e) {
  if (e.target === $("note")) {
    if (e.key === "Escape") $("note").blur();
    if (e.key === "Enter" && state.other && !e.shiftKey) { e.preventDefault(); $("note").blur(); act("reject", "other"); }
    return;
  }
  if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key.toLowerCase();
  if (state.picking) {
    e.preventDefault();
    if (/^[1-9]$/.test(k) && REASON_KEYS[Number(k) - 1]) act("reject", REASON_KEYS[Number(k) - 1]);
    else if (k === "escape") { pickReason(false); say(""); }
    return;
  }
  const keys = {
    c: () => act("confirm"), r: () => act("reject"), f: () => act("fix"), s: () => act("skip"), u: undo,
    n: () => $("note").focus(), b: () => { boxes.showBoxes = !boxes.showBoxes; draw(); },
    w: () => { boxes.showWeak = !boxes.showWeak; draw(); },
    a: () => { if (boxes.readOnly) return; boxes.adding = true; $("stage").classList.add("adding"); say("Drag on the image to draw the new box."); },
    j: () => { if (boxes.boxes.length) { boxes.selected = (boxes.selected + 1) % boxes.boxes.length; draw(); } },
    k: () => { if (boxes.boxes.length) { boxes.selected = (boxes.selected - 1 + boxes.boxes.length) % boxes.boxes.length; draw(); } },
    x: () => boxes.deleteSelected(), delete: () => boxes.deleteSelected(), backspace: () => boxes.deleteSelected(),
    "+": () => { boxes.zoom *= 1.25; applyZoom(); }, "=": () => { boxes.zoom *= 1.25; applyZoom(); },
    "-": () => { boxes.zoom /= 1.25; applyZoom(); }, 0: fit,
  };
  if (/^[1-9]$/.test(k) && boxes.selected >= 0 && !boxes.readOnly && CLASSES[Number(k) - 1]) {
    boxes.boxes[boxes.selected].label = CLASSES[Number(k) - 1].label; state.edited = true; draw(); e.preventDefault(); return;
  }
  if (keys[k]) { e.preventDefault(); keys[k](); }
}

$("classes").textContent = CLASSES.map((c, i) => `${i + 1} ${c.label}`).join(", ");
for (const action of ["confirm", "reject", "fix", "skip"]) $(action).addEventListener("click", () => act(action));
for (const b of document.querySelectorAll("#reasons button")) b.addEventListener("click", () => act("reject", b.dataset.reason));
$("undo").addEventListener("click", undo);
$("unskip").addEventListener("click", () => { state.skipped = []; loadNext().catch((err) => say(err.message, true)); });
document.addEventListener("keydown", onKey);
window.addEventListener("resize", fit);
(main.dataset.itemId ? openItem(main.dataset.itemId) : loadNext()).catch((err) => say(err.message, true));
