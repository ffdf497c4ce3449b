// Cameras (operators): a searchable, filterable table; add/edit with a probe of the URL before
// saving; bulk import with a per-row error report; enable, disable, remove; retention days.
import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { t } from "./i18n.js";

const STATES = ["recording", "connecting", "offline", "unauthorized", "unsupported", "disabled", "unknown"];

class Cameras {
  constructor(root) {
    this.root = root;
    this.q = h("input", { type: "search", id: "cam-q", placeholder: t("cam.search"), "aria-label": t("cam.search"), oninput: () => this.render() });
    this.region = h("select", { id: "cam-region", "aria-label": t("cam.region"), onchange: () => this.render() });
    this.state = h("select", { id: "cam-state", "aria-label": t("cam.state"), onchange: () => this.render() },
      h("option", { value: "" }, t("cam.all")), ...STATES.map((s) => h("option", { value: s }, t(`state.${s}`))));
    this.body = h("tbody", { id: "cam-rows" });
    this.count = h("span", { class: "muted" });
    this.panel = h("div", { class: "panel" });
    root.append(h("div", { class: "cameras" },
      h("div", { class: "toolbar" }, this.q,
        h("label", {}, t("cam.region"), " ", this.region), h("label", {}, t("cam.state"), " ", this.state),
        h("button", { type: "button", id: "cam-add", onclick: () => this.form(null) }, t("cam.add")),
        h("button", { type: "button", id: "cam-import", onclick: () => this.importForm() }, t("cam.import")),
        h("button", { type: "button", onclick: () => this.refresh() }, t("common.refresh")), this.count),
      this.panel,
      h("table", { class: "table" }, h("thead", {}, h("tr", {},
        ...["cam.id", "cam.name", "cam.region", "cam.state", "cam.retention", "cam.actions"].map((k) => h("th", {}, t(k))))), this.body)));
  }

  async refresh() {
    const [regions, cameras] = await Promise.all([api("/api/regions"), api("/api/cameras")]);
    this.regions = regions;
    this.cameras = cameras;
    const keep = this.region.value;
    this.region.replaceChildren(h("option", { value: "" }, t("cam.all")), ...regions.map((r) => h("option", { value: r.code }, `${r.name} (${r.code})`)));
    this.region.value = keep;
    this.render();
  }

  subtree(code) {
    const codes = new Set([code]);
    for (let grew = true; grew;) {
      grew = false;
      for (const r of this.regions) if (r.parent && codes.has(r.parent) && !codes.has(r.code)) { codes.add(r.code); grew = true; }
    }
    return codes;
  }

  render() {
    const q = this.q.value.trim().toLowerCase();
    const region = this.region.value ? this.subtree(this.region.value) : null;
    const rows = this.cameras.filter((c) => (!q || c.id.toLowerCase().includes(q) || c.name.toLowerCase().includes(q))
      && (!region || region.has(c.region)) && (!this.state.value || c.state === this.state.value));
    this.count.textContent = t("cam.count", { n: rows.length });
    this.body.replaceChildren(...rows.map((c) => {
      const retention = h("input", { type: "number", min: 1, max: 3650, value: c.retention_days, class: "narrow", "aria-label": `${t("cam.retention")} ${c.id}`,
        onchange: (e) => this.patch(c.id, { retention_days: Number(e.target.value) }) });
      const main = c.status?.main;
      return h("tr", { dataset: { id: c.id } },
        h("td", { class: "mono" }, c.id), h("td", {}, c.name),
        h("td", {}, c.region, c.region_note ? h("div", { class: "small muted region-note", title: c.region_note },
          `CivilCode ${c.gb_civil_code}: ${t("cam.region_note")}`) : ""),
        h("td", {}, h("span", { class: `state ${c.state}` }, t(`state.${c.state}`)),
          main?.last_error && c.state !== "recording" ? h("div", { class: "small muted" }, main.last_error) : ""),
        h("td", {}, retention),
        h("td", {},
          h("button", { type: "button", onclick: () => this.form(c) }, t("cam.edit")), " ",
          h("button", { type: "button", class: c.enabled ? "disable" : "enable", onclick: () => this.patch(c.id, { enabled: !c.enabled }) },
            t(c.enabled ? "cam.disable" : "cam.enable")), " ",
          h("button", { type: "button", class: "danger", onclick: () => this.remove(c.id) }, t("cam.remove"))));
    }));
  }

  async patch(id, changes) {
    try {
      await api(`/api/cameras/${encodeURIComponent(id)}`, { method: "PATCH", body: changes });
      toast(t("cam.saved", { id }));
    } catch (e) { toast(t("err.generic", { detail: e.message }), "error"); }
    await this.refresh();
  }

  async remove(id) {
    if (!confirm(t("cam.confirm_remove", { id }))) return;
    try { await api(`/api/cameras/${encodeURIComponent(id)}`, { method: "DELETE" }); }
    catch (e) { toast(t("err.generic", { detail: e.message }), "error"); }
    await this.refresh();
  }

  /** Add (camera null) or edit. URLs come back redacted: an untouched URL is not sent back. */
  form(camera) {
    const f = (name, attrs = {}) => h("input", { name, id: `f-${name}`, ...attrs });
    const fields = {
      id: f("id", { required: true, value: camera?.id ?? "", readOnly: !!camera }),
      name: f("name", { required: true, value: camera?.name ?? "" }),
      region: h("select", { name: "region", id: "f-region", required: true },
        ...this.regions.map((r) => h("option", { value: r.code, selected: camera?.region === r.code }, `${r.name} (${r.code})`))),
      main_url: f("main_url", { required: true, value: camera?.main_url ?? "", placeholder: "rtsp://user:password@host:554/..." }),
      sub_url: f("sub_url", { value: camera?.sub_url ?? "" }),
      retention_days: f("retention_days", { type: "number", min: 1, max: 3650, value: camera?.retention_days ?? 30 }),
      rtsp_transport: h("select", { name: "rtsp_transport", id: "f-rtsp_transport" }, ...["tcp", "udp"].map((x) => h("option", { value: x, selected: camera?.rtsp_transport === x }, x))),
      enabled: f("enabled", { type: "checkbox", checked: camera ? camera.enabled : true }),
    };
    const probeOut = h("output", { id: "probe-result", "aria-live": "polite" });
    const probe = async () => {
      probeOut.textContent = t("cam.probing");
      probeOut.className = "";
      try {
        const r = await api("/api/probe", { method: "POST", body: { url: fields.main_url.value, transport: fields.rtsp_transport.value } });
        probeOut.textContent = r.ok ? t("cam.probe_ok", { codec: r.codec.toUpperCase(), width: r.width, height: r.height, fps: Math.round(r.fps * 100) / 100 })
          : t("cam.probe_fail", { error: r.message });
        probeOut.className = r.ok ? "ok" : "error";
        probeOut.dataset.width = r.width;
        probeOut.dataset.height = r.height;
      } catch (e) { probeOut.textContent = t("cam.probe_fail", { error: e.message }); probeOut.className = "error"; }
    };
    const err = h("p", { class: "error", role: "alert" });
    const form = h("form", { class: "card form", id: "cam-form", onsubmit: async (e) => {
      e.preventDefault();
      const body = {};
      for (const [k, el] of Object.entries(fields)) {
        const v = el.type === "checkbox" ? el.checked : el.type === "number" ? Number(el.value) : el.value.trim();
        if (camera && (k === "id" || v === (camera[k] ?? ""))) continue;  // send only what changed
        if (k === "sub_url" && v === "") { if (!camera) continue; body[k] = null; continue; }
        body[k] = v;
      }
      try {
        if (camera) await api(`/api/cameras/${encodeURIComponent(camera.id)}`, { method: "PATCH", body });
        else await api("/api/cameras", { method: "POST", body });
        toast(t("cam.saved", { id: fields.id.value }));
        this.panel.replaceChildren();
        await this.refresh();
      } catch (ex) { err.textContent = ex.message; }
    } },
      h("h2", {}, camera ? `${t("cam.edit")} ${camera.id}` : t("cam.add")),
      ...Object.entries(fields).map(([k, el]) => h("div", { class: "row" }, h("label", { for: el.id }, t(k === "rtsp_transport" ? "cam.transport" : k === "retention_days" ? "cam.retention" : `cam.${k}`)), el,
        k === "main_url" ? h("button", { type: "button", id: "probe", onclick: probe }, t("cam.probe")) : "")),
      h("div", { class: "row" }, h("span", {}), probeOut),
      err,
      h("div", { class: "row" }, h("button", { type: "submit", id: "cam-save" }, t("cam.save")),
        h("button", { type: "button", onclick: () => this.panel.replaceChildren() }, t("cam.cancel"))));
    this.panel.replaceChildren(form);
    (camera ? fields.name : fields.id).focus();
  }

  importForm() {
    const format = h("select", { id: "imp-format", "aria-label": t("cam.import_format") }, h("option", { value: "csv" }, "CSV"), h("option", { value: "yaml" }, "YAML"));
    const text = h("textarea", { id: "imp-text", rows: 8, cols: 80, placeholder: "id,name,region,main_url,sub_url\n...", "aria-label": t("cam.import") });
    const file = h("input", { type: "file", accept: ".csv,.yaml,.yml", "aria-label": t("cam.import_file"), onchange: async (e) => {
      const fl = e.target.files[0];
      if (!fl) return;
      text.value = await fl.text();
      if (/\.ya?ml$/i.test(fl.name)) format.value = "yaml";
    } });
    const report = h("div", { id: "imp-report" });
    const go = async () => {
      report.replaceChildren();
      const r = await fetch(`/api/cameras/import?format=${format.value}`, { method: "POST", body: text.value,
        headers: { Authorization: `Bearer ${sessionStorage.getItem("sharpeyes.token")}`, "Content-Type": "text/plain; charset=utf-8" } });
      const out = await r.json().catch(() => ({}));
      if (r.ok) {
        report.append(h("p", { class: "ok" }, t("cam.imported", { n: out.imported })));
        await this.refresh();
        return;
      }
      const errors = out.detail?.errors ?? [{ row: null, camera_id: null, message: typeof out.detail === "string" ? out.detail : JSON.stringify(out.detail) }];
      report.append(h("p", { class: "error" }, t("cam.import_errors")), h("table", { class: "table" },
        h("thead", {}, h("tr", {}, h("th", {}, t("cam.row")), h("th", {}, t("cam.id")), h("th", {}, t("cam.message")))),
        h("tbody", {}, ...errors.map((x) => h("tr", {}, h("td", {}, x.row ?? "–"), h("td", {}, x.camera_id ?? "–"), h("td", {}, x.message))))));
    };
    this.panel.replaceChildren(h("div", { class: "card form" }, h("h2", {}, t("cam.import")),
      h("div", { class: "row" }, h("label", {}, t("cam.import_format")), format, file), text,
      h("div", { class: "row" }, h("button", { type: "button", id: "imp-go", onclick: go }, t("cam.import_go")),
        h("button", { type: "button", onclick: () => this.panel.replaceChildren() }, t("cam.cancel"))), report));
  }
}

export async function mount(root) {
  const page = new Cameras(root);
  await page.refresh();
  const timer = setInterval(() => { if (!page.panel.childElementCount) page.refresh().catch(() => {}); }, 10_000);
  return () => clearInterval(timer);
}
