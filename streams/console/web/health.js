// Health (operators): fleet online rate against the target, coverage per camera over 24 h (worst
// first), reconnects per hour, spool backlog, storage by region. Charts are inline SVG drawn here.
import { api } from "./api.js";
import { fmtBytes, fmtTime, h, svg, toast } from "./dom.js";
import { t } from "./i18n.js";

const pct = (x) => `${(x * 100).toFixed(1)} %`;

/** Horizontal bars: rows of {label, value 0..1 or absolute, text, cls}. */
function hbars(rows, { max = 1, id } = {}) {
  const rowH = 22, labelW = 180, w = 640;
  const s = svg("svg", { class: "chart hbars", id, viewBox: `0 0 ${w} ${Math.max(1, rows.length) * rowH}`, role: "img" });
  rows.forEach((r, i) => {
    const y = i * rowH;
    const bw = max > 0 ? ((w - labelW - 90) * Math.min(r.value, max)) / max : 0;
    s.append(
      svg("text", { x: 0, y: y + 15, class: "label" }, r.label),
      svg("rect", { x: labelW, y: y + 4, width: w - labelW - 90, height: rowH - 8, class: "track" }),
      svg("rect", { x: labelW, y: y + 4, width: Math.max(0, bw), height: rowH - 8, class: `bar ${r.cls || ""}`, "data-id": r.id },
        svg("title", {}, `${r.label}: ${r.text}`)),
      svg("text", { x: w - 84, y: y + 15, class: "value" }, r.text));
  });
  return s;
}

function vbars(values, labels, id) {
  const w = 640, hgt = 140, n = Math.max(1, values.length), max = Math.max(1, ...values);
  const bw = (w - 40) / n;
  const s = svg("svg", { class: "chart vbars", id, viewBox: `0 0 ${w} ${hgt + 20}`, role: "img" });
  s.append(svg("text", { x: 0, y: 12, class: "value" }, String(max)), svg("line", { x1: 30, x2: w, y1: hgt, y2: hgt, class: "axis" }));
  values.forEach((v, i) => {
    const bh = (v / max) * (hgt - 20);
    s.append(svg("rect", { x: 34 + i * bw, y: hgt - bh, width: Math.max(1, bw - 2), height: bh, class: "bar" }, svg("title", {}, `${labels[i]}: ${v}`)));
    if (i % 4 === 0) s.append(svg("text", { x: 34 + i * bw, y: hgt + 15, class: "label small" }, labels[i]));
  });
  return s;
}

function gauge(rate, target, ok) {
  const w = 640;
  return svg("svg", { class: "chart gauge", id: "online-gauge", viewBox: `0 0 ${w} 40`, role: "img", "aria-label": `${pct(rate)} / ${pct(target)}` },
    svg("rect", { x: 0, y: 8, width: w, height: 20, class: "track" }),
    svg("rect", { x: 0, y: 8, width: w * rate, height: 20, class: `bar ${ok ? "good" : "bad"}` }),
    svg("line", { x1: w * target, x2: w * target, y1: 2, y2: 34, class: "target" }, svg("title", {}, t("health.target", { target: pct(target) }))));
}

export async function mount(root) {
  const box = h("div", { class: "health", id: "health" });
  root.append(box);
  const draw = async () => {
    let fleet, hist;
    try {
      [fleet, hist] = await Promise.all([api("/api/health"), api("/api/health/fleet?hours=24")]);
    } catch (e) { return toast(t("err.generic", { detail: e.message }), "error"); }
    const cards = [];
    cards.push(h("section", { class: "card" }, h("h2", {}, t("health.online")),
      h("p", { class: `big-number ${fleet.ok ? "good" : "bad"}`, id: "online-rate" },
        `${pct(fleet.online_rate)} `, h("small", {}, `${fleet.online}/${fleet.cameras} · ${t("health.target", { target: pct(fleet.target) })} · ${t(fleet.ok ? "health.ok" : "health.bad")}`)),
      gauge(fleet.online_rate, fleet.target, fleet.ok)));
    const cams = hist.cameras.filter((c) => c.enabled);
    cards.push(h("section", { class: "card" }, h("h2", {}, t("health.coverage")),
      cams.length ? hbars(cams.map((c) => ({ id: c.camera_id, label: `${c.name} (${c.camera_id})`, value: c.coverage, text: pct(c.coverage),
        cls: c.coverage >= 0.98 ? "good" : c.coverage >= 0.9 ? "warn" : "bad" })), { id: "coverage-chart" }) : h("p", { class: "muted" }, t("health.none"))));
    cards.push(h("section", { class: "card" }, h("h2", {}, t("health.reconnects")),
      vbars(hist.reconnects_per_hour.map((x) => x.count), hist.reconnects_per_hour.map((x) => fmtTime(x.start_ms, false).slice(0, 5)), "reconnects-chart")));
    const sp = fleet.spool || {};
    cards.push(h("section", { class: "card" }, h("h2", {}, t("health.spool")),
      sp.spool_quota_bytes !== undefined
        ? [h("p", { id: "spool" }, `${fmtBytes(sp.spool_backlog_bytes)} · ${t("health.segments", { n: sp.spool_backlog_segments })}`,
            sp.store_available === 0 ? h("strong", { class: "bad" }, ` · ${t("health.store_down")}`) : ""),
          hbars([{ label: t("health.backlog"), value: sp.spool_backlog_bytes, text: fmtBytes(sp.spool_backlog_bytes),
            cls: sp.spool_backlog_bytes > 0.5 * sp.spool_quota_bytes ? "bad" : "good" }], { max: sp.spool_quota_bytes || 1 })]
        : h("p", { class: "muted" }, t("health.none"))));
    const regions = hist.storage;
    const maxBytes = Math.max(1, ...regions.map((r) => r.bytes));
    cards.push(h("section", { class: "card" }, h("h2", {}, t("health.storage")),
      hbars(regions.map((r) => ({ id: r.region, label: `${r.name} (${r.region})`, value: r.bytes, text: fmtBytes(r.bytes) })), { max: maxBytes, id: "storage-chart" })));
    box.replaceChildren(...cards);
  };
  await draw();
  const timer = setInterval(draw, 15_000);
  return () => clearInterval(timer);
}
