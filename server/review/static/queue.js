// The review queue page: one item at a time, boxes drawn over the image in SVG, every action on a key.
// Item data is put into the page with textContent and SVG attributes only (never innerHTML).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const CLASSES = JSON.parse(document.querySelector("main.queue").dataset.classes);
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const state = { item: null, boxes: [], weak: [], selected: -1, edited: false, showBoxes: true, showWeak: false,
                zoom: 1, adding: false, skipped: [], busy: false };

function colourOf(label) { const c = CLASSES.find((k) => k.label === label); return c ? c.colour : "#ff00ff"; }
function classIdOf(label) { return CLASSES.find((k) => k.label === label).id; }

async function api(path, body) {
  const response = await fetch(path, { method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": CSRF }, body: JSON.stringify(body || {}) });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

function say(text, bad) { const m = $("message"); m.textContent = text; m.className = bad ? "error" : ""; }

function showCounts(c) {
  if (c) $("counts").textContent = `${c.queued_flag} flagged, ${c.queued_review} to review, ${c.decided} decided`;
}

async function loadNext() {
  const data = await api("/api/next", { skip: state.skipped });
  showCounts(data.counts);
  const item = data.item;
  state.item = item;
  $("empty").hidden = !!item;
  $("stage").hidden = !item;
  $("note").value = "";
  if (!item) { for (const id of ["verdict", "model", "listing", "request", "item-id"]) $(id).textContent = ""; state.boxes = []; state.weak = []; drawList(); return; }
  const box = (d) => ({ label: d.label, x_min: d.x_min, y_min: d.y_min, x_max: d.x_max, y_max: d.y_max, confidence: d.confidence });
  state.boxes = item.detections.filter((d) => d.strong).map(box);
  state.weak = item.detections.filter((d) => !d.strong).map(box);
  state.selected = state.boxes.length ? 0 : -1;
  state.edited = false;
  $("verdict").textContent = item.verdict;
  $("verdict").className = "verdict " + item.verdict.toLowerCase();
  $("model").textContent = `${item.model.name} ${item.model.version} (${item.model.sha256.slice(0, 12)})`;
  $("listing").textContent = item.listing_id;
  $("request").textContent = item.request_id;
  $("item-id").textContent = String(item.id);
  const photo = $("photo");
  photo.onload = () => fit();
  photo.src = item.image_url;
  $("boxes").setAttribute("viewBox", `0 0 ${item.width} ${item.height}`);
  draw();
}

function fit() {
  if (!state.item) return;
  // The whole image in view, enlarged up to 3x where it is small.
  const wrap = $("stage").parentElement;
  const roomW = wrap.clientWidth - 8, roomH = window.innerHeight - wrap.getBoundingClientRect().top - 60;
  state.zoom = Math.min(3, roomW / state.item.width, Math.max(roomH, 200) / state.item.height) || 1;
  applyZoom();
}

function applyZoom() {
  const w = Math.round(state.item.width * state.zoom), h = Math.round(state.item.height * state.zoom);
  for (const el of [$("photo"), $("boxes")]) { el.style.width = w + "px"; el.style.height = h + "px"; }
  $("stage").style.width = w + "px"; $("stage").style.height = h + "px";
  draw();
}

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function draw() {
  const svg = $("boxes");
  svg.replaceChildren();
  if (!state.item || !state.showBoxes) { drawList(); return; }
  const px = 1 / state.zoom;  // one screen pixel in image pixels
  if (state.showWeak) state.weak.forEach((b, i) => {
    const g = svgEl("g", { class: "weak", "data-weak": i });
    g.append(svgEl("rect", { x: b.x_min, y: b.y_min, width: b.x_max - b.x_min, height: b.y_max - b.y_min,
      stroke: colourOf(b.label), "stroke-width": 1.5 * px, "stroke-dasharray": `${4 * px} ${3 * px}`, fill: "none", opacity: 0.6 }));
    const t = svgEl("text", { x: b.x_min + 2 * px, y: b.y_max - 3 * px, "font-size": 11 * px, fill: colourOf(b.label), opacity: 0.8 });
    t.textContent = `${b.label} ${b.confidence.toFixed(2)} (weak)`;
    g.append(t);
    g.addEventListener("pointerdown", (e) => { e.stopPropagation(); keepWeak(i); });
    svg.append(g);
  });
  state.boxes.forEach((b, i) => {
    const g = svgEl("g", { class: i === state.selected ? "box selected" : "box", "data-box": i });
    const colour = colourOf(b.label);
    const rect = svgEl("rect", { x: b.x_min, y: b.y_min, width: b.x_max - b.x_min, height: b.y_max - b.y_min, stroke: colour,
      "stroke-width": (i === state.selected ? 4 : 2.5) * px, fill: colour, "fill-opacity": 0.08, class: "body" });
    rect.addEventListener("pointerdown", (e) => startDrag(e, i, "move"));
    g.append(rect);
    const t = svgEl("text", { x: b.x_min + 3 * px, y: Math.max(b.y_min - 4 * px, 12 * px), "font-size": 13 * px, fill: colour, class: "label" });
    t.textContent = b.confidence === null ? `${b.label} (added)` : `${b.label} ${b.confidence.toFixed(2)}`;
    g.append(t);
    for (const [cx, cy, corner] of [[b.x_min, b.y_min, "nw"], [b.x_max, b.y_min, "ne"], [b.x_min, b.y_max, "sw"], [b.x_max, b.y_max, "se"]]) {
      const h = svgEl("rect", { x: cx - 5 * px, y: cy - 5 * px, width: 10 * px, height: 10 * px, fill: "#fff", stroke: colour,
        "stroke-width": 1.5 * px, class: `handle ${corner}`, "data-corner": corner });
      h.addEventListener("pointerdown", (e) => startDrag(e, i, corner));
      g.append(h);
    }
    svg.append(g);
  });
  drawList();
}

function drawList() {
  const list = $("box-list");
  list.replaceChildren();
  state.boxes.forEach((b, i) => {
    const li = document.createElement("li");
    li.className = i === state.selected ? "selected" : "";
    const select = document.createElement("select");
    select.setAttribute("aria-label", "class");
    for (const c of CLASSES) { const o = document.createElement("option"); o.value = c.label; o.textContent = c.label; select.append(o); }
    select.value = b.label;
    select.addEventListener("change", () => { b.label = select.value; changed(); });
    const conf = document.createElement("span");
    conf.className = "confidence";
    conf.textContent = b.confidence === null ? "added" : b.confidence.toFixed(2);
    const del = document.createElement("button");
    del.textContent = "delete"; del.className = "delete";
    del.addEventListener("click", () => { state.selected = i; deleteSelected(); });
    li.addEventListener("click", () => { state.selected = i; draw(); });
    li.append(select, " ", conf, " ", del);
    list.append(li);
  });
  $("edited").hidden = !state.edited;
  $("weak-note").textContent = state.weak.length
    ? `${state.weak.length} weaker box(es) below the review threshold: W ${state.showWeak ? "hides" : "shows"} them.` : "";
}

function changed() { state.edited = true; draw(); }

function toImage(e) {
  const p = $("boxes").createSVGPoint();
  p.x = e.clientX; p.y = e.clientY;
  const q = p.matrixTransform($("boxes").getScreenCTM().inverse());
  return { x: Math.min(Math.max(q.x, 0), state.item.width), y: Math.min(Math.max(q.y, 0), state.item.height) };
}

function startDrag(e, index, mode) {
  if (state.adding) return;
  e.preventDefault(); e.stopPropagation();
  state.selected = index;
  const start = toImage(e), b = state.boxes[index], orig = { ...b };
  const move = (ev) => {
    const p = toImage(ev), dx = p.x - start.x, dy = p.y - start.y;
    if (mode === "move") {
      const w = orig.x_max - orig.x_min, h = orig.y_max - orig.y_min;
      b.x_min = Math.min(Math.max(orig.x_min + dx, 0), state.item.width - w); b.x_max = b.x_min + w;
      b.y_min = Math.min(Math.max(orig.y_min + dy, 0), state.item.height - h); b.y_max = b.y_min + h;
    } else {
      if (mode.includes("w")) b.x_min = Math.min(orig.x_min + dx, b.x_max - 2);
      if (mode.includes("e")) b.x_max = Math.max(orig.x_max + dx, b.x_min + 2);
      if (mode.includes("n")) b.y_min = Math.min(orig.y_min + dy, b.y_max - 2);
      if (mode.includes("s")) b.y_max = Math.max(orig.y_max + dy, b.y_min + 2);
    }
    state.edited = true; draw();
  };
  const up = () => { window.removeEventListener("pointermove", move); window.removeEventListener("pointerup", up); draw(); };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

function startAdd(e) {
  if (!state.adding || !state.item) return;
  e.preventDefault();
  const start = toImage(e);
  const label = state.selected >= 0 ? state.boxes[state.selected].label : CLASSES[0].label;
  const b = { label, x_min: start.x, y_min: start.y, x_max: start.x, y_max: start.y, confidence: null };
  state.boxes.push(b); state.selected = state.boxes.length - 1;
  const move = (ev) => {
    const p = toImage(ev);
    b.x_min = Math.min(start.x, p.x); b.x_max = Math.max(start.x, p.x);
    b.y_min = Math.min(start.y, p.y); b.y_max = Math.max(start.y, p.y);
    draw();
  };
  const up = () => {
    window.removeEventListener("pointermove", move); window.removeEventListener("pointerup", up);
    state.adding = false; $("stage").classList.remove("adding");
    if (b.x_max - b.x_min < 2 || b.y_max - b.y_min < 2) { state.boxes.pop(); state.selected = state.boxes.length - 1; }
    changed();
  };
  window.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

function keepWeak(i) { state.boxes.push(state.weak[i]); state.weak.splice(i, 1); state.selected = state.boxes.length - 1; changed(); }

function deleteSelected() {
  if (state.selected < 0) return;
  state.boxes.splice(state.selected, 1);
  state.selected = Math.min(state.selected, state.boxes.length - 1);
  changed();
}

async function act(action) {
  if (!state.item || state.busy) return;
  if (action === "confirm" && state.edited) { say("You changed the boxes: press F to save them as a fix.", true); return; }
  state.busy = true;
  const body = { action, note: $("note").value };
  if (action === "fix") body.boxes = state.boxes.map((b) => ({ label: b.label, class_id: classIdOf(b.label),
    x_min: b.x_min, y_min: b.y_min, x_max: b.x_max, y_max: b.y_max }));
  try {
    await api(`/api/items/${state.item.id}/decision`, body);
    if (action === "skip") state.skipped.push(state.item.id);
    say(`${action}: item ${state.item.id} done`);
    await loadNext();
  } catch (err) { say(err.message, true); } finally { state.busy = false; }
}

function onKey(e) {
  if (e.target === $("note")) { if (e.key === "Escape") $("note").blur(); return; }
  if (e.target.tagName === "SELECT" || e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key.toLowerCase();
  const keys = {
    c: () => act("confirm"), r: () => act("reject"), f: () => act("fix"), s: () => act("skip"),
    n: () => $("note").focus(), b: () => { state.showBoxes = !state.showBoxes; draw(); },
    w: () => { state.showWeak = !state.showWeak; draw(); },
    a: () => { state.adding = true; $("stage").classList.add("adding"); say("Drag on the image to draw the new box."); },
    j: () => { if (state.boxes.length) { state.selected = (state.selected + 1) % state.boxes.length; draw(); } },
    k: () => { if (state.boxes.length) { state.selected = (state.selected - 1 + state.boxes.length) % state.boxes.length; draw(); } },
    x: deleteSelected, delete: deleteSelected, backspace: deleteSelected,
    "+": () => { state.zoom *= 1.25; applyZoom(); }, "=": () => { state.zoom *= 1.25; applyZoom(); },
    "-": () => { state.zoom /= 1.25; applyZoom(); }, 0: fit,
  };
  if (/^[1-9]$/.test(k) && state.selected >= 0 && CLASSES[Number(k) - 1]) {
    state.boxes[state.selected].label = CLASSES[Number(k) - 1].label; changed(); e.preventDefault(); return;
  }
  if (keys[k]) { e.preventDefault(); keys[k](); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("classes").textContent = CLASSES.map((c, i) => `${i + 1} ${c.label}`).join(", ");
  for (const action of ["confirm", "reject", "fix", "skip"]) $(action).addEventListener("click", () => act(action));
  $("boxes").addEventListener("pointerdown", startAdd);
  document.addEventListener("keydown", onKey);
  window.addEventListener("resize", fit);
  loadNext().catch((err) => say(err.message, true));
});
