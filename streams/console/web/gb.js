// GB/T 28181 devices (operators): every device that registers to us, its address and transport,
// last keepalive, channels and state with the reason; "doctor" findings per device (media
// address, RTP ports, NAT, last Catalog, last INVITE); ask a device for its Catalog again.
import { api } from "./api.js";
import { fmtTime, h, toast } from "./dom.js";
import { t } from "./i18n.js";

const STATE_CLASS = { online: "good", offline: "bad", refused: "bad", unregistered: "muted" };

export async function mount(root) {
  const summary = h("p", { class: "muted", id: "gb-server" });
  const body = h("tbody", { id: "gb-rows" });
  const open = new Set();
  let data = null;
  const render = () => {
    const s = data.server;
    summary.textContent = data.enabled
      ? t("gb.server", { id: s.id, bind: s.sip_bind, media: s.media_host || "?", ports: s.rtp_ports })
      : t("gb.off");
    const rows = [];
    for (const d of data.devices) {
      const addr = d.source_host ? `${d.source_host}:${d.source_port}` : "";
      const toggle = h("button", { type: "button", class: "link", "aria-expanded": open.has(d.device_id) ? "true" : "false",
        onclick: () => { open.has(d.device_id) ? open.delete(d.device_id) : open.add(d.device_id); render(); } }, t("gb.doctor"));
      const refresh = s.here && d.state === "online" ? h("button", { type: "button", class: "gb-refresh", onclick: async (e) => {
        e.target.disabled = true;
        try {
          const r = await api(`/api/gb/devices/${d.device_id}/refresh`, { method: "POST" });
          const failed = Object.keys(r.failures || {});
          toast(failed.length ? t("gb.refresh_failed", { what: failed.join(", ") }) : t("gb.refreshed"), failed.length ? "error" : "info");
          await load();
        } catch (ex) { toast(t("err.generic", { detail: ex.message }), "error"); } finally { e.target.disabled = false; }
      } }, t("gb.refresh")) : "";
      rows.push(h("tr", { dataset: { id: d.device_id, state: d.state } },
        h("td", { class: "mono" }, d.device_id, d.name ? h("div", { class: "small muted" }, d.name) : ""),
        h("td", { class: "mono" }, addr), h("td", {}, d.transport),
        h("td", { class: "mono small" }, d.last_keepalive_us ? fmtTime(d.last_keepalive_us / 1000) : t("gb.never"),
          d.keepalive_interval_s ? h("div", { class: "muted" }, t("gb.every", { s: Math.round(d.keepalive_interval_s) })) : ""),
        h("td", {}, String(d.channels)),
        h("td", { class: `gb-state ${STATE_CLASS[d.state] || ""}` }, t(`gb.state.${d.state}`)),
        h("td", { class: "small gb-reason" }, d.reason),
        h("td", {}, toggle, " ", refresh)));
      if (open.has(d.device_id)) {
        rows.push(h("tr", { class: "gb-doctor", dataset: { for: d.device_id } }, h("td", { colspan: 8 },
          h("ul", {}, ...d.doctor.map((f) => h("li", { class: f.level === "ok" ? "good" : f.level === "warn" ? "warn" : "bad" },
            h("strong", {}, `${f.level} `), f.text))))));
      }
    }
    body.replaceChildren(...rows);
    if (!data.devices.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted" }, t("gb.none"))));
  };
  const load = async () => {
    try { data = await api("/api/gb/devices"); } catch (e) { return toast(t("err.generic", { detail: e.message }), "error"); }
    render();
  };
  root.append(h("div", { class: "gb" }, summary,
    h("div", { class: "toolbar" }, h("button", { type: "button", onclick: load }, t("common.refresh"))),
    h("table", { class: "table" }, h("thead", {}, h("tr", {},
      ...["gb.id", "gb.address", "gb.transport", "gb.keepalive", "gb.channels", "gb.state", "gb.reason", "cam.actions"]
        .map((k) => h("th", {}, t(k))))), body)));
  await load();
  const timer = setInterval(load, 10_000);
  return () => clearInterval(timer);
}
