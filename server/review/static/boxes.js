// The boxes over the photo, in SVG: drawing, labels that never overlap, moving, resizing, adding.
// Labels are text on a solid background in the class colour, laid out so that no two overlap and
// none leaves the image; handles are drawn last and kept inside the image, so that a box touching
// the image's edge can still be resized. Item data goes in with textContent and attributes only.
// The image-level head's heat boxes (where it looked for a class it called for) are drawn dashed,
// labelled "image-level": not detections, never selected, moved or saved with a fix.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const LABEL_FONT_PX = 13, LABEL_PAD_PX = 3, HANDLE_PX = 10;
const measure = document.createElement("canvas").getContext("2d");

function svgEl(name, attrs) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function overlaps(a, b) { return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h; }

function textColourOn(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#000" : "#fff";
}

// Places each label (in the given order) at the first of: above the box, inside its top, below
// it, inside its bottom, that stays in the image and misses every label placed before; failing
// all four, it walks down (then up) from the first until it finds room.
export function layoutLabels(labels, width, height) {
  const placed = [];
  for (const l of labels) {
    const clampX = (x) => Math.min(Math.max(x, 0), Math.max(width - l.w, 0));
    const clampY = (y) => Math.min(Math.max(y, 0), Math.max(height - l.h, 0));
    const x = clampX(l.box.x_min);
    const tries = [l.box.y_min - l.h, l.box.y_min, l.box.y_max, l.box.y_max - l.h].map((y) => ({ x, y: clampY(y), w: l.w, h: l.h }));
    let spot = tries.find((t) => !placed.some((p) => overlaps(t, p)));
    for (let step = 1; !spot && step < 400; step++) {
      for (const dy of [step * l.h / 2, -step * l.h / 2]) {
        const t = { ...tries[0], y: clampY(tries[0].y + dy) };
        if (!placed.some((p) => overlaps(t, p))) { spot = t; break; }
      }
    }
    spot = spot || tries[0];
    placed.push(spot);
    Object.assign(l, { x: spot.x, y: spot.y });
  }
  return labels;
}

export class BoxEditor {
  constructor(svg, classes, onChange) {
    this.svg = svg; this.classes = classes; this.onChange = onChange;
    this.width = 1; this.height = 1; this.zoom = 1;
    this.boxes = []; this.weak = []; this.heat = []; this.selected = -1;
    this.showBoxes = true; this.showWeak = false; this.adding = false; this.readOnly = false;
    svg.addEventListener("pointerdown", (e) => this.startAdd(e));
  }

  colourOf(label) { const c = this.classes.find((k) => k.label === label); return c ? c.colour : "#ff00ff"; }

  load(width, height, boxes, weak, readOnly, heat = []) {
    Object.assign(this, { width, height, boxes, weak, readOnly, heat, selected: boxes.length ? 0 : -1, adding: false });
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  }

  labelText(b, weak) {
    if (weak) return `${b.label} ${b.confidence.toFixed(2)} (weak)`;
    if (b.confidence === null) return this.readOnly ? b.label : `${b.label} (added)`;
    return b.confidence === null ? `${b.label} (added)` : `${b.deciding ? "\u2605 " : ""}${b.label} ${b.confidence.toFixed(2)}`;
  }

  draw() {
    const svg = this.svg, px = 1 / this.zoom;
    svg.replaceChildren();
    if (!this.showBoxes) return;
    const bodies = svgEl("g", { class: "bodies" }), labels = svgEl("g", { class: "labels" }), handles = svgEl("g", { class: "handles" });
    const pending = [];
    this.heat.forEach((h) => {
      const g = svgEl("g", { class: "heat", "data-label": h.label });
      g.append(svgEl("rect", { x: h.x_min, y: h.y_min, width: h.x_max - h.x_min, height: h.y_max - h.y_min, stroke: this.colourOf(h.label),
        "stroke-width": 2 * px, "stroke-dasharray": `${8 * px} ${5 * px}`, fill: "none" }));
      bodies.append(g);
      pending.push({ box: h, text: `image-level ${h.label} ${h.score.toFixed(2)}`, heat: true });
    });
    if (this.showWeak) this.weak.forEach((b, i) => {
      const g = svgEl("g", { class: "weak", "data-weak": i });
      g.append(svgEl("rect", { x: b.x_min, y: b.y_min, width: b.x_max - b.x_min, height: b.y_max - b.y_min, stroke: this.colourOf(b.label),
        "stroke-width": 1.5 * px, "stroke-dasharray": `${4 * px} ${3 * px}`, fill: "none", opacity: 0.6 }));
      g.addEventListener("pointerdown", (e) => { e.stopPropagation(); if (!this.readOnly) this.keepWeak(i); });
      bodies.append(g);
      pending.push({ box: b, text: this.labelText(b, true), weak: true });
    });
    this.boxes.forEach((b, i) => {
      const colour = this.colourOf(b.label), chosen = i === this.selected;
      const rect = svgEl("rect", { x: b.x_min, y: b.y_min, width: b.x_max - b.x_min, height: b.y_max - b.y_min, stroke: colour,
        "stroke-width": (chosen ? 4 : 2.5) * px, fill: colour, "fill-opacity": 0.08, class: chosen ? "body selected" : "body", "data-box": i });
      rect.addEventListener("pointerdown", (e) => this.startDrag(e, i, "move"));
      bodies.append(rect);
      pending.unshift({ box: b, text: this.labelText(b, false), weak: false, index: i });
    });
    // Strong boxes' labels are placed first (the selected one before all), then the image-level ones, weak ones last.
    const rank = (l) => (l.weak ? 2 : l.heat ? 1 : 0);
    pending.sort((a, b) => (rank(a) - rank(b)) || ((b.index === this.selected) - (a.index === this.selected)) || ((a.index ?? 0) - (b.index ?? 0)));
    measure.font = `600 ${LABEL_FONT_PX}px system-ui, sans-serif`;
    for (const l of pending) { l.w = (measure.measureText(l.text).width + 2 * LABEL_PAD_PX) * px; l.h = (LABEL_FONT_PX + 2 * LABEL_PAD_PX) * px; }
    for (const l of layoutLabels(pending, this.width, this.height)) {
      const colour = this.colourOf(l.box.label);
      const g = svgEl("g", { class: l.weak ? "label weak-label" : l.heat ? "label heat-label" : "label", opacity: l.weak ? 0.75 : 1 });
      g.append(svgEl("rect", { x: l.x, y: l.y, width: l.w, height: l.h, fill: colour, class: "label-bg" }));
      const t = svgEl("text", { x: l.x + LABEL_PAD_PX * px, y: l.y + (LABEL_PAD_PX + LABEL_FONT_PX * 0.82) * px,
        "font-size": LABEL_FONT_PX * px, fill: textColourOn(colour) });
      t.textContent = l.text;
      g.append(t);
      labels.append(g);
    }
    if (!this.readOnly) this.boxes.forEach((b, i) => {
      const colour = this.colourOf(b.label), half = (HANDLE_PX / 2) * px;
      const inside = (v, max) => Math.min(Math.max(v, half), max - half);  // a corner on the edge stays reachable
      for (const [cx, cy, corner] of [[b.x_min, b.y_min, "nw"], [b.x_max, b.y_min, "ne"], [b.x_min, b.y_max, "sw"], [b.x_max, b.y_max, "se"]]) {
        const h = svgEl("rect", { x: inside(cx, this.width) - half, y: inside(cy, this.height) - half, width: 2 * half, height: 2 * half,
          fill: "#fff", stroke: colour, "stroke-width": 1.5 * px, class: `handle ${corner}`, "data-box": i, "data-corner": corner });
        h.addEventListener("pointerdown", (e) => this.startDrag(e, i, corner));
        handles.append(h);
      }
    });
    svg.append(bodies, labels, handles);
  }

  toImage(e) {
    const p = this.svg.createSVGPoint();
    p.x = e.clientX; p.y = e.clientY;
    const q = p.matrixTransform(this.svg.getScreenCTM().inverse());
    return { x: Math.min(Math.max(q.x, 0), this.width), y: Math.min(Math.max(q.y, 0), this.height) };
  }

  follow(move, done) {
    const up = () => { window.removeEventListener("pointermove", move); window.removeEventListener("pointerup", up); done(); };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  startDrag(e, index, mode) {
    if (this.adding || this.readOnly) return;
    e.preventDefault(); e.stopPropagation();
    this.selected = index;
    const start = this.toImage(e), b = this.boxes[index], orig = { ...b };
    this.follow((ev) => {
      const p = this.toImage(ev), dx = p.x - start.x, dy = p.y - start.y;
      if (mode === "move") {
        const w = orig.x_max - orig.x_min, h = orig.y_max - orig.y_min;
        b.x_min = Math.min(Math.max(orig.x_min + dx, 0), this.width - w); b.x_max = b.x_min + w;
        b.y_min = Math.min(Math.max(orig.y_min + dy, 0), this.height - h); b.y_max = b.y_min + h;
      } else {
        if (mode.includes("w")) b.x_min = Math.max(0, Math.min(orig.x_min + dx, b.x_max - 2));
        if (mode.includes("e")) b.x_max = Math.min(this.width, Math.max(orig.x_max + dx, b.x_min + 2));
        if (mode.includes("n")) b.y_min = Math.max(0, Math.min(orig.y_min + dy, b.y_max - 2));
        if (mode.includes("s")) b.y_max = Math.min(this.height, Math.max(orig.y_max + dy, b.y_min + 2));
      }
      this.onChange(true);
    }, () => this.onChange(false));
  }

  startAdd(e) {
    if (!this.adding) return;
    e.preventDefault();
    const start = this.toImage(e);
    const label = this.selected >= 0 ? this.boxes[this.selected].label : this.classes[0].label;
    const b = { label, x_min: start.x, y_min: start.y, x_max: start.x, y_max: start.y, confidence: null };
    this.boxes.push(b); this.selected = this.boxes.length - 1;
    this.follow((ev) => {
      const p = this.toImage(ev);
      b.x_min = Math.min(start.x, p.x); b.x_max = Math.max(start.x, p.x);
      b.y_min = Math.min(start.y, p.y); b.y_max = Math.max(start.y, p.y);
      this.draw();
    }, () => {
      this.adding = false; this.svg.parentElement.classList.remove("adding");
      if (b.x_max - b.x_min < 2 || b.y_max - b.y_min < 2) { this.boxes.pop(); this.selected = this.boxes.length - 1; }
      this.onChange(true);
    });
  }

  keepWeak(i) { this.boxes.push(this.weak[i]); this.weak.splice(i, 1); this.selected = this.boxes.length - 1; this.onChange(true); }

  deleteSelected() {
    if (this.selected < 0 || this.readOnly) return;
    this.boxes.splice(this.selected, 1);
    this.selected = Math.min(this.selected, this.boxes.length - 1);
    this.onChange(true);
  }
}
