// Playback and export. The <video> plays clip.mp4 directly for a window of up to 10 minutes from
// the seek point (the server starts it at the keyframe before, with an edit list, so time 0 of
// the window is the seek time exactly; Range requests make it seekable inside the window).
// At the window's end the next window (or the next run after a gap) is loaded.
import { api, streamToken } from "./api.js";
import { download, fmtTime, h, toast } from "./dom.js";
import { t } from "./i18n.js";
import { Timeline } from "./timeline.js";

const WINDOW_MS = 10 * 60 * 1000;
const SPEEDS = [1, 2, 4, 8];

function today() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function params() {
  return new URLSearchParams(location.hash.split("?")[1] || "");
}

class Playback {
  constructor(root) {
    this.camera = null;
    this.window = null;  // [start_ms, end_ms] of the clip in the <video>
    this.in = null;
    this.out = null;
    this.fps = 25;
    this.cameraSelect = h("select", { id: "pb-camera", "aria-label": t("pb.camera") });
    this.day = h("input", { type: "date", id: "pb-day", value: params().get("day") || today(), "aria-label": t("pb.day") });
    this.video = h("video", { id: "pb-video", muted: true, playsInline: true, preload: "auto" });
    this.video.muted = true;
    this.video.addEventListener("timeupdate", () => this.tick());
    this.video.addEventListener("ended", () => this.next());
    this.video.addEventListener("play", () => (this.playBtn.textContent = t("pb.pause")));
    this.video.addEventListener("pause", () => (this.playBtn.textContent = t("pb.play")));
    this.timeline = new Timeline({ onSeek: (ms) => this.seek(ms), onMark: (which, ms) => this.mark(which, ms) });
    this.timeline.thumbnail = (ms) => this.thumbnailAt(ms);
    this.position = h("span", { id: "pb-position", class: "mono" });
    this.playBtn = h("button", { type: "button", id: "pb-play", onclick: () => (this.video.paused ? this.video.play() : this.video.pause()) }, t("pb.play"));
    this.speedButtons = SPEEDS.map((s) => h("button", { type: "button", class: "speed", dataset: { speed: s }, "aria-pressed": String(s === 1),
      onclick: () => this.setSpeed(s) }, `${s}×`));
    this.inLabel = h("span", { id: "pb-in", class: "mono" }, "–");
    this.outLabel = h("span", { id: "pb-out", class: "mono" }, "–");
    this.reason = h("input", { id: "pb-reason", placeholder: t("pb.reason"), "aria-label": t("pb.reason"), maxlength: 2000 });
    this.progress = h("progress", { id: "pb-progress", max: 1, value: 0, hidden: true });
    this.result = h("div", { id: "pb-result" });
    this.exportsBody = h("tbody", { id: "exports" });
    root.append(h("div", { class: "playback" },
      h("div", { class: "toolbar" },
        h("label", {}, t("pb.camera"), " ", this.cameraSelect),
        h("label", {}, t("pb.day"), " ", this.day),
        h("button", { type: "button", id: "pb-load", onclick: () => this.load() }, t("pb.load")),
        h("button", { type: "button", onclick: () => this.timeline.fitDay() }, "24h"),
        h("button", { type: "button", onclick: () => this.timeline.zoom(0.5, this.timeline.playhead) }, "+"),
        h("button", { type: "button", onclick: () => this.timeline.zoom(2, this.timeline.playhead) }, "−")),
      this.timeline.el,
      h("div", { class: "player" }, this.video),
      h("div", { class: "toolbar" },
        this.playBtn,
        h("button", { type: "button", id: "pb-stepback", onclick: () => this.step(-1) }, t("pb.stepback")),
        h("button", { type: "button", id: "pb-step", onclick: () => this.step(1) }, t("pb.step")),
        h("span", {}, t("pb.speed")), ...this.speedButtons,
        h("button", { type: "button", id: "pb-snapshot", onclick: () => this.snapshot() }, t("pb.snapshot")),
        this.position),
      h("div", { class: "toolbar export" },
        h("button", { type: "button", id: "pb-markin", onclick: () => this.mark("in", this.now()) }, t("pb.markin")),
        h("span", {}, `${t("pb.in")}: `), this.inLabel,
        h("button", { type: "button", id: "pb-markout", onclick: () => this.mark("out", this.now()) }, t("pb.markout")),
        h("span", {}, `${t("pb.out")}: `), this.outLabel,
        this.reason,
        h("button", { type: "button", id: "pb-export", onclick: () => this.export() }, t("pb.export")),
        this.progress, this.result),
      h("h2", {}, t("pb.exports")),
      h("table", { class: "table" }, h("thead", {}, h("tr", {},
        ...["pb.camera", "ex.range", "pb.reason", "ex.status", "ex.created", "cam.actions"].map((k) => h("th", {}, t(k))))), this.exportsBody)));
    this.onKey = (e) => this.key(e);
    document.addEventListener("keydown", this.onKey);
  }

  async start() {
    const cams = await api("/api/cameras");
    this.cameras = new Map(cams.map((c) => [c.id, c]));
    this.cameraSelect.replaceChildren(...cams.map((c) => h("option", { value: c.id }, `${c.name} (${c.id})`)));
    const wanted = params().get("camera");
    if (wanted && this.cameras.has(wanted)) this.cameraSelect.value = wanted;
    this.cameraSelect.addEventListener("change", () => this.load());
    this.day.addEventListener("change", () => this.load());
    if (cams.length) await this.load();
    await this.listExports();
  }

  async load() {
    this.camera = this.cameraSelect.value;
    const cam = this.cameras.get(this.camera);
    this.fps = cam?.status?.main?.fps || 25;
    const [y, m, d] = this.day.value.split("-").map(Number);
    const dayStart = new Date(y, m - 1, d).getTime();
    const dayEnd = new Date(y, m - 1, d + 1).getTime();
    const q = `start=${dayStart}&end=${dayEnd}`;
    const data = await api(`/api/cameras/${encodeURIComponent(this.camera)}/recordings?${q}`);
    this.data = data;
    this.timeline.set(data, dayStart, dayEnd);
    // Motion spans and thumbnails come from the media routes where the server has them.
    api(`/api/cameras/${encodeURIComponent(this.camera)}/motion?${q}`)
      .then((spans) => { this.timeline.motion = spans; this.timeline.draw(); }).catch(() => {});
    this.thumbs = [];
    this.thumbCache = new Map();
    api(`/api/cameras/${encodeURIComponent(this.camera)}/thumbnails?${q}`).then((list) => (this.thumbs = list)).catch(() => {});
    if (!data.runs.length) { toast(t("pb.nodata")); return; }
    await this.seek(data.runs[0].start_ms);
  }

  /** An <img> of the thumbnail nearest `ms` (fetched with the token, cached), or null. */
  thumbnailAt(ms) {
    if (!this.thumbs?.length) return null;
    let best = this.thumbs[0];
    for (const th of this.thumbs) if (Math.abs(th.t_us / 1000 - ms) < Math.abs(best.t_us / 1000 - ms)) best = th;
    if (Math.abs(best.t_us / 1000 - ms) > 60_000) return null;
    let img = this.thumbCache.get(best.url);
    if (!img) {
      img = h("img", { alt: "" });
      this.thumbCache.set(best.url, img);
      api(best.url, { raw: true }).then(async (r) => { if (r.status === 200) img.src = URL.createObjectURL(await r.blob()); }).catch(() => {});
    }
    return img;
  }

  /** The wall time on screen now (ms), or null. */
  now() {
    if (!this.window) return null;
    return Math.round(this.window[0] + this.video.currentTime * 1000);
  }

  /** Play from `ms`: inside the loaded window by seeking, else by loading a new window. A time in
   *  a gap plays from the next recorded run. */
  async seek(ms) {
    if (!this.data) return;
    let run = this.data.runs.find((r) => r.start_ms <= ms && ms < r.end_ms);
    if (!run) {
      run = this.data.runs.find((r) => r.start_ms > ms);
      if (!run) return;
      ms = run.start_ms;
    }
    this.timeline.setPlayhead(ms);
    if (this.window && ms >= this.window[0] && ms < this.window[1] - 500) {
      this.video.currentTime = (ms - this.window[0]) / 1000;
      return;
    }
    const end = Math.min(run.end_ms, ms + WINDOW_MS);
    const token = await streamToken(this.camera);
    this.window = [ms, end];
    this.run = run;
    const rate = this.video.playbackRate;
    this.video.src = `/api/cameras/${encodeURIComponent(this.camera)}/clip.mp4?start=${ms}&end=${end}&token=${encodeURIComponent(token)}`;
    this.video.playbackRate = rate;
    this.video.dataset.window = `${ms}-${end}`;
    await this.video.play().catch(() => {});
  }

  /** The window ended: go on in the same run, or jump the gap to the next run. */
  next() {
    if (!this.window) return;
    const end = this.window[1];
    this.window = null;
    const more = this.data.runs.find((r) => r.end_ms > end + 100);
    if (more) this.seek(Math.max(end, more.start_ms));
  }

  tick() {
    const ms = this.now();
    if (ms == null) return;
    this.timeline.setPlayhead(ms);
    this.position.textContent = t("pb.position", { time: fmtTime(ms) });
    this.position.dataset.ms = ms;
  }

  setSpeed(s) {
    this.video.playbackRate = s;
    this.video.defaultPlaybackRate = s;
    for (const b of this.speedButtons) b.setAttribute("aria-pressed", String(Number(b.dataset.speed) === s));
  }

  step(frames) {
    if (!this.window) return;
    this.video.pause();
    const t0 = this.video.currentTime + frames / this.fps;
    this.video.currentTime = Math.max(0, Math.min(t0, (this.window[1] - this.window[0]) / 1000));
  }

  key(e) {
    if (e.target.closest("input, select, textarea, svg")) return;
    if (e.key === " ") { e.preventDefault(); this.video.paused ? this.video.play() : this.video.pause(); }
    else if (e.key === "," ) this.step(-1);
    else if (e.key === ".") this.step(1);
  }

  mark(which, ms) {
    if (ms == null) return;
    this[which] = ms;
    this.inLabel.textContent = this.in == null ? "–" : fmtTime(this.in);
    this.outLabel.textContent = this.out == null ? "–" : fmtTime(this.out);
    this.inLabel.dataset.ms = this.in ?? "";
    this.outLabel.dataset.ms = this.out ?? "";
    this.timeline.setMarks(this.in, this.out);
  }

  async snapshot() {
    const ms = this.now();
    if (ms == null) return;
    const r = await api(`/api/cameras/${encodeURIComponent(this.camera)}/snapshot.jpg?at=${ms}`, { raw: true });
    download(await r.blob(), `${this.camera}_${fmtTime(ms).replace(/[-: ]/g, "")}.jpg`);
  }

  async export() {
    if (this.in == null || this.out == null || this.out <= this.in) return toast(t("pb.needrange"), "error");
    if (!this.reason.value.trim()) { this.reason.focus(); return toast(t("pb.needreason"), "error"); }
    this.result.replaceChildren();
    let job;
    try {
      job = await api("/api/exports", { method: "POST", body: { camera: this.camera, start: this.in, end: this.out, reason: this.reason.value.trim() } });
    } catch (e) {
      return toast(t("err.generic", { detail: e.message }), "error");
    }
    this.progress.hidden = false;
    while (job.status === "queued" || job.status === "running") {
      this.progress.value = job.progress || 0;
      await new Promise((r) => setTimeout(r, 500));
      job = await api(`/api/exports/${job.id}`);
    }
    this.progress.value = 1;
    this.result.replaceChildren(...this.jobLinks(job));
    this.result.dataset.status = job.status;
    await this.listExports();
  }

  jobLinks(job) {
    if (job.status === "failed") return [h("span", { class: "error" }, `${t("ex.failed")}: ${job.error}`)];
    if (job.status !== "done") return [t(`ex.${job.status}`)];
    const get = (what, name) => async () => {
      const r = await api(job.links[what], { raw: true });
      const cd = r.headers.get("Content-Disposition") || "";
      download(await r.blob(), (cd.match(/filename="([^"]+)"/) || [])[1] || name);
    };
    return [
      h("button", { type: "button", class: "dl-clip", onclick: get("clip", `${job.id}.mp4`) }, t("ex.clip")), " ",
      h("button", { type: "button", class: "dl-manifest", onclick: get("manifest", `${job.id}.manifest.json`) }, t("ex.manifest")),
    ];
  }

  async listExports() {
    const jobs = await api("/api/exports").catch(() => []);
    this.exportsBody.replaceChildren(...jobs.map((j) => h("tr", { dataset: { id: j.id } },
      h("td", {}, j.camera_id),
      h("td", {}, `${fmtTime(j.start_us / 1000)} – ${fmtTime(j.end_us / 1000, false)}`),
      h("td", {}, j.reason),
      h("td", {}, j.status === "running" ? `${Math.round(j.progress * 100)} %` : t(`ex.${j.status}`)),
      h("td", {}, fmtTime(j.created_us / 1000)),
      h("td", {}, ...this.jobLinks(j)))));
  }

  destroy() {
    document.removeEventListener("keydown", this.onKey);
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
  }
}

export async function mount(root) {
  const pb = new Playback(root);
  window.__playback = pb;
  await pb.start().catch((e) => toast(t("err.generic", { detail: e.message }), "error"));
  return () => pb.destroy();
}
