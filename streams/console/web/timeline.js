// The recordings timeline: an inline SVG of runs and gaps (coloured by reason), motion spans and
// thumbnails when the server has them, the playhead and in/out marks. Click or Enter seeks;
// arrows move a cursor (10 s, Shift: 1 min), +/- zoom, I/O mark in/out.
import { h, svg, fmtTime } from "./dom.js";
import { t } from "./i18n.js";

const H = 64;

export class Timeline {
  constructor({ onSeek, onMark }) {
    this.onSeek = onSeek;
    this.onMark = onMark;
    this.data = null;
    this.motion = [];
    this.thumbs = [];
    this.playhead = null;
    this.cursor = null;
    this.in = null;
    this.out = null;
    this.tip = h("div", { class: "tip", role: "tooltip", hidden: true });
    this.svg = svg("svg", { class: "timeline", id: "timeline", tabindex: "0", role: "slider", height: H,
      "aria-label": t("pb.timeline"), preserveAspectRatio: "none" });
    this.svg.addEventListener("click", (e) => this.onSeek(this.timeAt(e)));
    this.svg.addEventListener("mousemove", (e) => this.hover(e));
    this.svg.addEventListener("mouseleave", () => (this.tip.hidden = true));
    this.svg.addEventListener("keydown", (e) => this.key(e));
    this.svg.addEventListener("wheel", (e) => { e.preventDefault(); this.zoom(e.deltaY < 0 ? 0.5 : 2, this.timeAt(e)); });
    this.legend = h("div", { class: "legend", id: "timeline-legend" });
    this.el = h("div", { class: "timeline-box" }, this.svg, this.tip, this.axis = h("div", { class: "axis" }), this.legend);
    new ResizeObserver(() => this.draw()).observe(this.svg);
  }

  /** `data` is GET /api/cameras/{id}/recordings; the view fits the recorded data (or the day). */
  set(data, dayStart, dayEnd) {
    this.data = data;
    this.dayStart = dayStart;
    this.dayEnd = dayEnd;
    // Fit the view on what was recorded, and the gaps between and after the runs (not the
    // "unknown" stretch before the first recording, which may fill most of the day).
    if (data.runs.length) {
      const lo = Math.min(...data.runs.map((r) => r.start_ms));
      const hi = Math.max(...data.runs.map((r) => r.end_ms), ...data.gaps.filter((g) => g.start_ms >= lo).map((g) => Math.min(g.end_ms, Date.now())));
      const pad = Math.max(5000, (hi - lo) * 0.04);
      this.view = [Math.max(dayStart, lo - pad), Math.min(dayEnd, hi + pad)];
    } else this.view = [dayStart, dayEnd];
    this.cursor = null;
    this.draw();
  }

  fitDay() { this.view = [this.dayStart, this.dayEnd]; this.draw(); }

  zoom(factor, around) {
    if (!this.view) return;
    const [a, b] = this.view;
    const c = around ?? (a + b) / 2;
    const span = Math.min(this.dayEnd - this.dayStart, Math.max(10_000, (b - a) * factor));
    let lo = c - ((c - a) / (b - a)) * span;
    lo = Math.max(this.dayStart, Math.min(lo, this.dayEnd - span));
    this.view = [lo, lo + span];
    this.draw();
  }

  width() { return this.svg.clientWidth || 800; }
  x(ms) { const [a, b] = this.view; return ((ms - a) / (b - a)) * this.width(); }
  timeAt(e) {
    const r = this.svg.getBoundingClientRect();
    const [a, b] = this.view;
    return Math.round(a + ((e.clientX - r.left) / r.width) * (b - a));
  }

  /** What is at time `ms`: a run, a gap (with reason), or nothing. */
  spanAt(ms) {
    if (!this.data) return null;
    const run = this.data.runs.find((r) => r.start_ms <= ms && ms < r.end_ms);
    if (run) return { kind: "run", ...run };
    const gap = this.data.gaps.find((g) => g.start_ms <= ms && ms < g.end_ms);
    return gap ? { kind: "gap", ...gap } : null;
  }

  describe(ms) {
    const s = this.spanAt(ms);
    const what = !s ? "" : s.kind === "run" ? t("pb.recorded") : t("pb.gap", { reason: t(`gap.${s.reason}`) });
    return `${fmtTime(ms)} ${what}`;
  }

  hover(e) {
    const ms = this.timeAt(e);
    this.tip.replaceChildren(this.describe(ms));
    const img = this.thumbnail?.(ms);
    if (img) this.tip.append(img);
    this.tip.hidden = false;
    const r = this.svg.getBoundingClientRect();
    this.tip.style.left = `${Math.min(e.clientX - r.left, r.width - 200)}px`;
  }

  key(e) {
    if (!this.view) return;
    const base = this.cursor ?? this.playhead ?? this.view[0];
    const step = e.shiftKey ? 60_000 : 10_000;
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      this.cursor = Math.max(this.dayStart, Math.min(this.dayEnd, base + (e.key === "ArrowRight" ? step : -step)));
      if (this.cursor < this.view[0] || this.cursor > this.view[1]) this.zoom(1, this.cursor);
      this.tip.textContent = this.describe(this.cursor);
      this.tip.hidden = false;
      this.tip.style.left = `${Math.max(0, Math.min(this.x(this.cursor), this.width() - 200))}px`;
    } else if (e.key === "Enter" || e.key === " ") this.onSeek(base);
    else if (e.key === "+" || e.key === "=") this.zoom(0.5, base);
    else if (e.key === "-") this.zoom(2, base);
    else if (e.key === "i" || e.key === "I") this.onMark("in", base);
    else if (e.key === "o" || e.key === "O") this.onMark("out", base);
    else return;
    e.preventDefault();
    this.draw();
  }

  setPlayhead(ms) { this.playhead = ms; this.drawMarks(); }
  setMarks(inMs, outMs) { this.in = inMs; this.out = outMs; this.drawMarks(); }

  draw() {
    const s = this.svg;
    s.replaceChildren();
    if (!this.view || !this.data) return;
    const w = this.width();
    s.setAttribute("viewBox", `0 0 ${w} ${H}`);
    s.append(svg("rect", { class: "bg", x: 0, y: 16, width: w, height: 28 }));
    const rect = (cls, span, y, hgt, title, extra = {}) => {
      const x0 = Math.max(0, this.x(span.start_ms)), x1 = Math.min(w, this.x(span.end_ms));
      if (x1 < 0 || x0 > w) return null;
      return svg("rect", { class: cls, x: x0, y, width: Math.max(1, x1 - x0), height: hgt, ...extra }, svg("title", {}, title));
    };
    for (const r of this.data.runs)
      s.append(rect("run", r, 16, 28, `${t("pb.recorded")} ${fmtTime(r.start_ms)} – ${fmtTime(r.end_ms, false)}`) || "");
    for (const g of this.data.gaps)
      s.append(rect(`gap reason-${g.reason}`, g, 16, 28,
        `${t("pb.gap", { reason: t(`gap.${g.reason}`) })} ${fmtTime(g.start_ms)} – ${fmtTime(g.end_ms, false)}${g.detail ? ` (${g.detail})` : ""}`,
        { "data-reason": g.reason }) || "");
    for (const m of this.motion)
      s.append(rect("motion", { start_ms: m.start_us / 1000, end_ms: m.end_us / 1000 }, 46, 6, `motion ${m.peak}`) || "");
    // Ticks: about one per 120 px, on round steps.
    const [a, b] = this.view;
    const steps = [1e3, 5e3, 1e4, 3e4, 6e4, 3e5, 6e5, 18e5, 36e5, 108e5];
    const step = steps.find((x) => ((b - a) / x) * 120 <= w) || 36e5;
    const labels = [];
    for (let ms = Math.ceil(a / step) * step; ms <= b; ms += step) {
      s.append(svg("line", { class: "tick", x1: this.x(ms), x2: this.x(ms), y1: 10, y2: 16 }));
      labels.push(h("span", { style: { left: `${(this.x(ms) / w) * 100}%` } }, fmtTime(ms, false)));
    }
    this.axis.replaceChildren(...labels);
    // A legend of what this day shows: recorded, and each gap reason present.
    const swatch = (cls) => svg("svg", { width: 12, height: 12, class: "timeline" }, svg("rect", { class: cls, width: 12, height: 12 }));
    const reasons = [...new Set(this.data.gaps.map((g) => g.reason))];
    this.legend.replaceChildren(
      h("span", {}, swatch("run"), ` ${t("pb.recorded")}`),
      ...reasons.map((r) => h("span", { dataset: { reason: r } }, swatch(`gap reason-${r}`), ` ${t(`gap.${r}`)}`)));
    this.marks = svg("g", { class: "marks" });
    s.append(this.marks);
    this.drawMarks();
  }

  drawMarks() {
    if (!this.marks || !this.view) return;
    const line = (cls, ms) => (ms == null ? null : svg("line", { class: cls, x1: this.x(ms), x2: this.x(ms), y1: 2, y2: H - 2 }));
    const g = this.marks;
    g.replaceChildren();
    if (this.in != null && this.out != null && this.out > this.in)
      g.append(svg("rect", { class: "selection", x: this.x(this.in), y: 12, width: this.x(this.out) - this.x(this.in), height: 36 }));
    for (const el of [line("in", this.in), line("out", this.out), line("cursor", this.cursor), line("playhead", this.playhead)])
      if (el) g.append(el);
    if (this.playhead != null) this.svg.setAttribute("aria-valuetext", fmtTime(this.playhead));
  }
}
