// Audit (admins): who viewed, played back, exported or changed what, and when; newest first.
import { api } from "./api.js";
import { fmtTime, h, toast } from "./dom.js";
import { t } from "./i18n.js";

export async function mount(root) {
  const f = (name, label, attrs = {}) => h("input", { name, id: `audit-${name}`, placeholder: t(label), "aria-label": t(label), ...attrs });
  const user = f("user", "audit.user"), action = f("action", "audit.action"), camera = f("camera", "audit.camera");
  const since = h("input", { type: "datetime-local", id: "audit-since", "aria-label": t("audit.time") });
  const body = h("tbody", { id: "audit-rows" });
  const more = h("button", { type: "button", hidden: true, onclick: () => load(true) }, t("audit.more"));
  let oldest = null;
  const load = async (append = false) => {
    const q = new URLSearchParams({ limit: "200" });
    if (user.value.trim()) q.set("user", user.value.trim());
    if (action.value.trim()) q.set("action", action.value.trim());
    if (camera.value.trim()) q.set("camera_id", camera.value.trim());
    if (since.value) q.set("since", String(new Date(since.value).getTime()));
    if (append && oldest != null) q.set("before_id", String(oldest));
    let rows;
    try { rows = await api(`/api/audit?${q}`); } catch (e) { return toast(t("err.generic", { detail: e.message }), "error"); }
    const trs = rows.map((r) => h("tr", {},
      h("td", { class: "mono" }, fmtTime(r.time_us / 1000)), h("td", {}, r.user), h("td", {}, r.role), h("td", {}, r.action),
      h("td", {}, r.outcome), h("td", { class: "mono" }, r.camera_id ?? ""),
      h("td", { class: "mono small" }, r.range_start_us ? `${fmtTime(r.range_start_us / 1000)} – ${fmtTime(r.range_end_us / 1000, false)}` : ""),
      h("td", { class: "mono" }, r.client_ip), h("td", { class: "small" }, r.detail)));
    append ? body.append(...trs) : body.replaceChildren(...trs);
    if (rows.length) oldest = Math.min(...rows.map((r) => r.id));
    more.hidden = rows.length < 200;
  };
  root.append(h("div", { class: "audit" },
    h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); load(); } }, user, action, camera, since,
      h("button", { type: "submit" }, t("audit.search"))),
    h("table", { class: "table" }, h("thead", {}, h("tr", {}, ...["audit.time", "audit.user", "auth.role", "audit.action", "audit.outcome",
      "audit.camera", "audit.range", "audit.ip", "audit.detail"].map((k) => h("th", {}, t(k))))), body), more));
  await load();
}
