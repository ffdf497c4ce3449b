// The console shell: sign-in, the header, and hash routing between the pages.
import { api, may, session, signIn, signOut } from "./api.js";
import { h, toast } from "./dom.js";
import { t, toggleLang, translate } from "./i18n.js";

const PAGES = [
  { path: "wall", need: "viewer", load: () => import("./wall.js") },
  { path: "playback", need: "investigator", load: () => import("./playback.js") },
  { path: "cameras", need: "operator", load: () => import("./cameras.js") },
  { path: "health", need: "operator", load: () => import("./health.js") },
  { path: "gb", need: "operator", load: () => import("./gb.js") },
  { path: "audit", need: "admin", load: () => import("./audit.js") },
];

const main = document.getElementById("main");
let unmount = null;

function signInPage(message = "") {
  document.getElementById("top").hidden = true;
  const err = h("p", { class: "error", role: "alert", id: "signin-error" }, message);
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "signin card", onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    try {
      await signIn(user.value, pass.value);
      if (!location.hash || location.hash === "#/signin") location.hash = "#/wall";
      route();
    } catch (ex) {
      err.textContent = t("auth.failed", { detail: ex.message });
    }
  } },
    h("h1", {}, t("app.title")),
    h("label", { for: "username" }, t("auth.username")), user,
    h("label", { for: "password" }, t("auth.password")), pass,
    h("button", { type: "submit", id: "signin" }, t("auth.signin")),
    err,
    h("button", { type: "button", class: "link", onclick: () => { toggleLang(); signInPage(); } }, t("lang.switch")),
  );
  cleanup();
  main.replaceChildren(form);
  user.focus();
}

function cleanup() {
  if (unmount) { try { unmount(); } catch (e) { console.error(e); } }
  unmount = null;
}

function header(current) {
  const me = session.me;
  document.getElementById("top").hidden = false;
  translate(document.getElementById("top"));
  const nav = document.getElementById("nav");
  nav.replaceChildren(...PAGES.filter((p) => may(p.need)).map((p) =>
    h("a", { href: `#/${p.path}`, id: `nav-${p.path}`, "aria-current": p.path === current ? "page" : null }, t(`nav.${p.path}`))));
  const scope = me.regions.includes("*") ? t("scope.all") : me.regions.join(", ");
  document.getElementById("who").replaceChildren(
    h("span", { id: "me-name" }, me.name), " · ",
    h("span", { id: "me-role" }, t(`role.${me.role}`)), " · ",
    h("span", { id: "me-scope", title: t("auth.scope") }, scope));
  document.getElementById("lang").textContent = t("lang.switch");
}

async function route() {
  if (!session.token) return signInPage();
  if (!session.me) {
    try { session.me = await api("/api/me"); } catch { return signInPage(); }
  }
  const path = (location.hash.replace(/^#\//, "").split("?")[0]) || "wall";
  const page = PAGES.find((p) => p.path === path && may(p.need)) || PAGES[0];
  if (page.path !== path) { location.hash = `#/${page.path}`; return; }
  header(page.path);
  cleanup();
  main.replaceChildren(h("p", { class: "muted" }, t("common.loading")));
  const mod = await page.load();
  main.replaceChildren();
  document.title = `${t(`nav.${page.path}`)} · sharpeyes`;
  unmount = await mod.mount(main) || null;
}

session.onExpired = () => signInPage(t("auth.expired"));
document.getElementById("signout").addEventListener("click", () => {
  cleanup();
  signOut();
  location.hash = "#/signin";
  signInPage();
});
document.getElementById("lang").addEventListener("click", () => { toggleLang(); route(); });
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (e) => toast(t("err.generic", { detail: e.reason?.message ?? e.reason }), "error"));
route();
