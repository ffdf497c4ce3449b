// The live wall: a region tree (county → township → village) with online/total per node, and a
// grid of 1/4/9/16 tiles. Drag a camera or region onto a tile, or select it and press Enter.
import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { t } from "./i18n.js";
import { LiveError, LivePlayer } from "./player.js";

const STORE = "sharpeyes.wall";
const LAYOUTS = [1, 4, 9, 16];
const REFRESH_MS = 5000;
const RETRY_MAX_S = 15;

function loadLayout() {
  try {
    const s = JSON.parse(localStorage.getItem(STORE));
    if (LAYOUTS.includes(s.n) && Array.isArray(s.cells)) return s;
  } catch { /* none yet */ }
  return { n: 4, cells: [] };
}

/** One tile: a camera's sub-stream, its badge and delay, offline reasons and self-recovery. */
class Tile {
  constructor(wall, index) {
    this.wall = wall;
    this.index = index;
    this.video = h("video", { muted: true, autoplay: true, playsInline: true, disablePictureInPicture: true });
    this.video.muted = true;
    this.name = h("span", { class: "name" });
    this.badge = h("span", { class: "badge" });
    this.delay = h("span", { class: "delay" });
    this.why = h("div", { class: "why" });
    this.el = h("div", {
      class: "tile", tabindex: 0, role: "button", dataset: { index },
      ondragover: (e) => { e.preventDefault(); this.el.classList.add("over"); },
      ondragleave: () => this.el.classList.remove("over"),
      ondrop: (e) => { e.preventDefault(); this.el.classList.remove("over"); wall.dropOn(index, e.dataTransfer.getData("text/plain")); },
      ondblclick: () => this.camera && wall.openBig(this.camera),
      onfocus: () => wall.select(index),
      onkeydown: (e) => wall.tileKey(e, index),
    }, this.video, h("div", { class: "overlay" }, this.name, this.badge, this.delay), this.why);
    this.camera = null;
    this.player = null;
    this.timer = 0;
    this.failures = 0;
  }

  set(cameraId) {
    if (cameraId === this.camera) return;
    this.stop();
    this.camera = cameraId;
    this.failures = 0;
    this.el.dataset.camera = cameraId || "";
    this.render();
    if (cameraId) this.connect();
  }

  render(state = this.camera ? "connecting" : "empty", reason = "") {
    const cam = this.wall.cameras.get(this.camera);
    this.state = state;
    this.el.dataset.state = state;
    this.name.textContent = this.camera ? (cam ? cam.name : this.camera) : t("wall.empty");
    this.badge.textContent = state === "empty" ? "" : t(`wall.${state === "live" ? "live" : state === "offline" ? "offline" : "connecting"}`);
    this.badge.className = `badge ${state}`;
    this.why.textContent = reason;
    this.el.setAttribute("aria-label", `${this.name.textContent} ${this.badge.textContent} ${reason}`);
  }

  async connect() {
    const id = this.camera;
    clearTimeout(this.timer);
    this.render("connecting");
    // Tiles take the sub-stream where the camera has one; the big view takes the main stream.
    const stream = this.wall.cameras.get(id)?.sub_url ? "sub" : "main";
    const player = (this.player = new LivePlayer(this.video, id, stream));
    player.onended = (why) => this.fail(why);
    // Time to first picture, for the badge's tooltip and the browser tests (docs/console.md).
    const t0 = performance.now();
    this.firstFrameMs = null;
    this.video.requestVideoFrameCallback?.(() => { if (this.player === player) this.firstFrameMs = Math.round(performance.now() - t0); });
    try {
      await player.start();
      if (this.camera !== id || player.closed) return;
      this.failures = 0;
      this.render("live");
      this.lastFrames = -1;
      this.stalled = 0;
      this.timer = setTimeout(() => this.watch(), 2000);
    } catch (e) {
      if (this.camera !== id || player.closed) return;
      this.fail(e);
    }
  }

  /** Every 2 s: show the delay, and give up on a feed that stopped sending frames. */
  async watch() {
    if (!this.player || this.state !== "live") return;
    const frames = this.player.frames();
    this.stalled = frames === this.lastFrames ? this.stalled + 1 : 0;
    this.lastFrames = frames;
    const d = await this.player.measureDelay().catch(() => null);
    this.delay.textContent = d == null ? "" : t("wall.delay", { ms: d });
    if (this.stalled >= 3) return this.fail(new Error("no frames for 6 s"));
    this.timer = setTimeout(() => this.watch(), 2000);
  }

  async fail(error) {
    const id = this.camera;
    if (this.player) { this.player.onended = () => {}; this.player.stop(); this.player = null; }
    clearTimeout(this.timer);
    this.delay.textContent = "";
    let reason = error instanceof Error ? error.message : String(error);
    if (error instanceof LiveError && error.detail && typeof error.detail === "object") {
      reason = error.detail.last_error || t(`state.${error.detail.state}`) || reason;
    }
    try {  // the camera's own status says best why it is down
      const status = await api(`/api/cameras/${encodeURIComponent(id)}/status`);
      const s = status.sub || status.main;
      if (s && s.state !== "recording") reason = s.last_error || t(`state.${s.state}`);
    } catch (e) { if (e.status === 404) reason = e.message; }
    if (this.camera !== id) return;
    this.failures += 1;
    const wait = Math.min(RETRY_MAX_S, 2 ** Math.min(this.failures, 4));
    this.render("offline", `${t("wall.why", { reason })} · ${t("wall.retry", { s: wait })}`);
    this.timer = setTimeout(() => this.camera === id && this.connect(), wait * 1000);
  }

  /** The camera list changed: reconnect early if an offline camera is recording again. */
  nudge(cam) {
    if (this.state === "offline" && cam && cam.state === "recording") { this.failures = 0; this.connect(); }
    if (this.state !== "empty") this.name.textContent = cam ? cam.name : this.camera;
  }

  stop() {
    clearTimeout(this.timer);
    if (this.player) { this.player.onended = () => {}; this.player.stop(); this.player = null; }
    this.delay.textContent = "";
  }
}

class Wall {
  constructor(root) {
    this.root = root;
    this.cameras = new Map();
    this.regions = [];
    this.layout = loadLayout();
    this.tiles = [];
    this.selected = 0;
    this.grid = h("div", { class: "grid", id: "wall-grid", role: "grid", "aria-label": t("nav.wall") });
    this.tree = h("ul", { class: "tree", role: "tree", id: "region-tree", "aria-label": t("wall.regions") });
    this.layoutButtons = LAYOUTS.map((n) => h("button", {
      type: "button", class: "layout", dataset: { n }, "aria-pressed": "false", onclick: () => this.setLayout(n),
    }, String(n)));
    root.append(h("div", { class: "wall-page" },
      h("aside", { class: "side" }, h("h2", {}, t("wall.regions")), h("p", { class: "muted small" }, t("wall.hint")), this.tree),
      h("section", { class: "wall" },
        h("div", { class: "toolbar" }, h("span", {}, t("wall.layout")), ...this.layoutButtons,
          h("button", { type: "button", onclick: () => this.clear() }, t("wall.clear")),
          h("span", { class: "muted small" }, t("wall.fullscreen"))),
        this.grid)));
    this.onKey = (e) => { if (e.key === "Escape") this.closeBig(); };
    document.addEventListener("keydown", this.onKey);
  }

  async start() {
    await this.refresh();
    // Cameras saved by another user of this browser, or out of this user's scope, are dropped.
    this.layout.cells = this.layout.cells.map((c) => (c && this.cameras.has(c) ? c : null));
    this.setLayout(this.layout.n);
    this.refresher = setInterval(() => this.refresh().catch(() => {}), REFRESH_MS);
  }

  async refresh() {
    const [regions, cameras] = await Promise.all([api("/api/regions"), api("/api/cameras")]);
    this.regions = regions;
    this.cameras = new Map(cameras.map((c) => [c.id, c]));
    this.renderTree();
    for (const tile of this.tiles) if (tile.camera) tile.nudge(this.cameras.get(tile.camera));
  }

  renderTree() {
    const focused = document.activeElement?.dataset?.key;
    const byParent = new Map();
    for (const r of this.regions) {
      const k = r.parent ?? "";
      if (!byParent.has(k)) byParent.set(k, []);
      byParent.get(k).push(r);
    }
    const camsByRegion = new Map();
    for (const c of this.cameras.values()) {
      if (!camsByRegion.has(c.region)) camsByRegion.set(c.region, []);
      camsByRegion.get(c.region).push(c);
    }
    const item = (key, label, extra, level) => h("li", {
      role: "treeitem", tabindex: -1, draggable: "true", "aria-level": level, dataset: { key },
      ondragstart: (e) => e.dataTransfer.setData("text/plain", key),
      onkeydown: (e) => this.treeKey(e, key),
      onclick: (e) => { e.stopPropagation(); e.currentTarget.focus(); },
    }, label, extra);
    const build = (code, level) => {
      const nodes = [];
      for (const r of byParent.get(code) || []) {
        const children = [
          ...build(r.code, level + 1),
          ...(camsByRegion.get(r.code) || []).map((c) => item(`camera:${c.id}`,
            h("span", { class: `dot ${c.state === "recording" ? "on" : "off"}` }), h("span", { class: "cam-name" }, ` ${c.name} `), level + 1)),
        ];
        const li = item(`region:${r.code}`, h("span", { class: "region-name" }, r.name),
          h("span", { class: "count", dataset: { region: r.code } }, ` ${t("tree.counts", { online: r.online, total: r.cameras })}`), level);
        li.setAttribute("aria-expanded", "true");
        if (children.length) li.append(h("ul", { role: "group" }, children));
        nodes.push(li);
      }
      return nodes;
    };
    this.tree.replaceChildren(...build("", 1));
    const items = this.tree.querySelectorAll("[role=treeitem]");
    const again = focused && this.tree.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    (again || items[0])?.setAttribute("tabindex", "0");
    if (again) again.focus();
  }

  treeKey(e, key) {
    const items = [...this.tree.querySelectorAll("[role=treeitem]")];
    const i = items.indexOf(e.currentTarget);
    let next = null;
    if (e.key === "ArrowDown") next = items[i + 1];
    else if (e.key === "ArrowUp") next = items[i - 1];
    else if (e.key === "Home") next = items[0];
    else if (e.key === "End") next = items[items.length - 1];
    else if (e.key === "Enter" || e.key === " ") { e.preventDefault(); e.stopPropagation(); this.dropOn(this.selected, key); return; }
    else return;
    e.preventDefault();
    e.stopPropagation();
    if (next) { items.forEach((x) => x.setAttribute("tabindex", "-1")); next.setAttribute("tabindex", "0"); next.focus(); }
  }

  /** Put a camera on tile `index`, or a region's cameras on the tiles from `index` on. */
  dropOn(index, key) {
    if (!key) return;
    const [kind, id] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
    let ids = [];
    if (kind === "camera") ids = [id];
    else if (kind === "region") {
      const codes = new Set([id]);
      for (let grew = true; grew;) {
        grew = false;
        for (const r of this.regions) if (r.parent && codes.has(r.parent) && !codes.has(r.code)) { codes.add(r.code); grew = true; }
      }
      ids = [...this.cameras.values()].filter((c) => codes.has(c.region)).map((c) => c.id);
    }
    ids.slice(0, this.layout.n - index).forEach((cid, k) => this.place(index + k, cid));
    this.save();
  }

  place(index, cameraId) {
    this.layout.cells[index] = cameraId;
    this.tiles[index]?.set(cameraId);
  }

  setLayout(n) {
    this.layout.n = n;
    for (const b of this.layoutButtons) b.setAttribute("aria-pressed", String(Number(b.dataset.n) === n));
    for (const tile of this.tiles.slice(n)) tile.stop();
    this.tiles = this.tiles.slice(0, n);
    while (this.tiles.length < n) this.tiles.push(new Tile(this, this.tiles.length));
    this.grid.style.setProperty("--cols", String(Math.sqrt(n)));
    this.grid.dataset.n = n;
    this.grid.replaceChildren(...this.tiles.map((x) => x.el));
    this.tiles.forEach((tile, i) => { tile.el.dataset.index = i; tile.set(this.layout.cells[i] || null); });
    this.selected = Math.min(this.selected, n - 1);
    this.markSelected();
    this.save();
  }

  clear() {
    this.layout.cells = [];
    this.tiles.forEach((x) => x.set(null));
    this.save();
  }

  save() {
    localStorage.setItem(STORE, JSON.stringify({ n: this.layout.n, cells: this.layout.cells.slice(0, 16) }));
  }

  select(i) { this.selected = i; this.markSelected(); }
  markSelected() { this.tiles.forEach((x, i) => x.el.classList.toggle("selected", i === this.selected)); }

  tileKey(e, i) {
    const cols = Math.sqrt(this.layout.n);
    const move = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols }[e.key];
    if (move !== undefined) {
      e.preventDefault();
      const j = i + move;
      if (j >= 0 && j < this.layout.n) this.tiles[j].el.focus();
    } else if (e.key === "Enter" && this.tiles[i].camera) {
      e.preventDefault();
      this.openBig(this.tiles[i].camera);
    } else if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      this.place(i, null);
      this.save();
    }
  }

  /** The main stream of one camera over the whole wall. */
  openBig(cameraId) {
    this.closeBig();
    const cam = this.cameras.get(cameraId);
    const video = h("video", { muted: true, autoplay: true, playsInline: true, id: "big-video" });
    video.muted = true;
    const status = h("span", { class: "badge connecting" }, t("wall.connecting"));
    const close = h("button", { type: "button", onclick: () => this.closeBig() }, t("wall.close"));
    this.big = h("div", { class: "big", role: "dialog", "aria-label": cam ? cam.name : cameraId, ondblclick: () => this.closeBig() },
      video, h("div", { class: "overlay" }, h("span", { class: "name" }, cam ? cam.name : cameraId), h("span", {}, ` ${t("wall.main")} `), status, close));
    if (cam && cam.source === "gb28181") this.big.append(ptzPad(cameraId));
    this.bigReturn = document.activeElement;
    this.grid.parentElement.append(this.big);
    close.focus();
    this.bigPlayer = new LivePlayer(video, cameraId, "main");
    this.bigPlayer.start().then(() => { status.textContent = t("wall.live"); status.className = "badge live"; })
      .catch((e) => { status.textContent = `${t("wall.offline")}: ${e.message}`; status.className = "badge offline"; });
  }

  closeBig() {
    if (!this.big) return;
    this.bigPlayer?.stop();
    this.big.remove();
    this.big = null;
    this.bigReturn?.focus?.();
  }

  destroy() {
    clearInterval(this.refresher);
    document.removeEventListener("keydown", this.onKey);
    this.closeBig();
    this.tiles.forEach((x) => x.stop());
  }
}

/** PTZ buttons for a GB/T 28181 channel: move while pressed, stop on release (POST /api/cameras/{id}/ptz). */
function ptzPad(cameraId) {
  const send = (action) => api(`/api/cameras/${encodeURIComponent(cameraId)}/ptz`, { method: "POST", body: { action, speed: 128 } })
    .catch((e) => toast(`${t("ptz.failed")}: ${e.message}`));
  const button = (action, label) => {
    const b = h("button", { type: "button", class: "ptz-" + action, title: t(`ptz.${action}`), "aria-label": t(`ptz.${action}`) }, label);
    let moving = false;
    const stop = () => { if (moving) { moving = false; send("stop"); } };
    b.addEventListener("pointerdown", (e) => { e.preventDefault(); moving = true; send(action); });
    b.addEventListener("pointerup", stop);
    b.addEventListener("pointerleave", stop);
    b.addEventListener("dblclick", (e) => e.stopPropagation());
    return b;
  };
  return h("div", { class: "ptz", role: "group", "aria-label": t("ptz.title") },
    button("up", "▲"), button("left", "◀"), button("right", "▶"), button("down", "▼"),
    button("zoom_in", "+"), button("zoom_out", "−"));
}

export async function mount(root) {
  const wall = new Wall(root);
  window.__wall = wall;  // for the browser tests and the curious
  try {
    await wall.start();
  } catch (e) {
    toast(t("err.generic", { detail: e.message }), "error");
  }
  return () => wall.destroy();
}
