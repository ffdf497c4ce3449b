// Live video for one <video>: WebRTC (WHEP) first, fMP4 over a WebSocket into MSE as the fallback.
//
// WHEP: POST the browser's SDP offer (non-trickle: sent once ICE gathering is complete, since
// the server answers with all of its candidates at once), get the answer, DELETE the Location
// when done. MSE: the server sends a JSON "init" text message, the init segment, then one
// fragment per frame; we keep the playhead near the live edge.
import { renewToken, session, streamToken } from "./api.js";

// A live view ends when the token it was opened with expires (15 min): renew well before.
const RENEW_MS = 5 * 60 * 1000;

export class LiveError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : (detail?.message ?? "live view failed"));
    this.status = status;
    this.detail = detail;
  }
}

const ICE_GATHER_MS = 1500;
const CONNECT_MS = 8000;

function waitIce(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => pc.iceGatheringState === "complete" && done();
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, ICE_GATHER_MS);  // host candidates come at once; don't wait on STUN that isn't there
  });
}

/** The offer without the browser's mDNS host candidates (`<uuid>.local`). The server cannot
 *  use them (it would spend about a second trying to resolve each name) and does not need them:
 *  the browser's connectivity checks reach the server's candidates, and the server learns the
 *  browser's address from those (peer-reflexive). Measured: first picture 1.3 s -> 0.35 s. */
export function withoutMdnsCandidates(sdp) {
  return sdp.replace(/^a=candidate:[^\r\n]* [0-9a-zA-Z-]+\.local [^\r\n]*\r?\n/gm, "");
}

async function readDetail(r) {
  try { return (await r.json()).detail; } catch { return r.statusText; }
}

export class LivePlayer {
  /** @param {HTMLVideoElement} video */
  constructor(video, cameraId, stream = "sub") {
    this.video = video;
    this.cameraId = cameraId;
    this.stream = stream;
    this.mode = null;  // "webrtc" | "mse"
    this.closed = false;
    this.onended = () => {};
    this._stats = { jb: 0, emitted: 0 };
    this.delay = null;
    this.timing = {};  // ms from start: gathered, answered, connected (WebRTC)
  }

  /** Keep the server-side view alive: a fresh token every RENEW_MS (WHEP: PATCH, MSE: a message). */
  _renewLoop() {
    clearInterval(this._renewer);
    this._renewer = setInterval(async () => {
      try {
        if (this.mode === "webrtc" && this.location) {
          let r = await fetch(this.location, { method: "PATCH", headers: { Authorization: `Bearer ${session.token}` } });
          if (r.status === 401 && await renewToken()) {
            r = await fetch(this.location, { method: "PATCH", headers: { Authorization: `Bearer ${session.token}` } });
          }
        } else if (this.mode === "mse" && this.ws?.readyState === WebSocket.OPEN) {
          this.ws.send(JSON.stringify({ type: "renew", token: await streamToken(this.cameraId) }));
        }
      } catch (e) { console.warn(`camera ${this.cameraId}: renewing the live view failed: ${e.message}`); }
    }, RENEW_MS);
  }

  async start() {
    this._renewLoop();
    // "mse" forces the WebSocket path (networks that block WebRTC's UDP); see docs/console.md.
    if (localStorage.getItem("sharpeyes.live") === "mse") {
      await this._mse();
      this.mode = "mse";
      return;
    }
    try {
      await this._whep();
      this.mode = "webrtc";
    } catch (e) {
      this._closeWhep();
      // Offline, unknown, no such stream, codec refused: MSE would get the same answer.
      if (e instanceof LiveError && [404, 409, 429, 503].includes(e.status)) throw e;
      if (this.closed) throw e;
      console.warn(`camera ${this.cameraId}: WebRTC failed (${e.message}); trying MSE`);
      await this._mse();
      this.mode = "mse";
    }
  }

  async _whep() {
    const t0 = performance.now();
    const mark = (name) => (this.timing[name] = Math.round(performance.now() - t0));
    const pc = (this.pc = new RTCPeerConnection());
    pc.addTransceiver("video", { direction: "recvonly" });
    const connected = new Promise((resolve, reject) => {
      pc.ontrack = (e) => {
        this.video.srcObject = e.streams[0] || new MediaStream([e.track]);
        this.video.play().catch(() => {});
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "connected") resolve();
        if (["failed", "closed"].includes(pc.connectionState)) {
          reject(new Error(`WebRTC ${pc.connectionState}`));
          if (this.mode === "webrtc" && !this.closed) this.onended("webrtc " + pc.connectionState);
        }
        if (pc.connectionState === "disconnected" && this.mode === "webrtc" && !this.closed) this.onended("webrtc disconnected");
      };
      setTimeout(() => reject(new Error("WebRTC did not connect")), CONNECT_MS);
    });
    connected.catch(() => {});  // awaited below only once the offer is answered
    await pc.setLocalDescription(await pc.createOffer());
    await waitIce(pc);
    mark("gathered");
    const r = await fetch(`/api/cameras/${encodeURIComponent(this.cameraId)}/whep?stream=${this.stream}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/sdp" },
      body: withoutMdnsCandidates(pc.localDescription.sdp),
    });
    if (r.status !== 201) throw new LiveError(r.status, await readDetail(r));
    this.location = r.headers.get("Location");
    mark("answered");
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    await connected;
    mark("connected");
  }

  _closeWhep() {
    if (this.location) {
      fetch(this.location, { method: "DELETE", headers: { Authorization: `Bearer ${session.token}` }, keepalive: true })
        .catch(() => {});
      this.location = null;
    }
    if (this.pc) { this.pc.close(); this.pc = null; }
    this.video.srcObject = null;
  }

  async _mse() {
    const token = await streamToken(this.cameraId);
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${proto}//${location.host}/api/cameras/${encodeURIComponent(this.cameraId)}/live.mp4?stream=${this.stream}&token=${encodeURIComponent(token)}`;
    const ms = (this.ms = new MediaSource());
    this.video.src = URL.createObjectURL(ms);
    await new Promise((r) => ms.addEventListener("sourceopen", r, { once: true }));
    const ws = (this.ws = new WebSocket(url));
    ws.binaryType = "arraybuffer";
    const queue = [];
    let sb = null;
    const pump = () => {
      if (!sb || sb.updating || !queue.length || ms.readyState !== "open") return;
      try { sb.appendBuffer(queue.shift()); } catch (e) { console.warn(e); queue.length = 0; }
    };
    let firstData;
    const started = new Promise((resolve, reject) => {
      firstData = resolve;
      ws.onerror = () => reject(new LiveError(0, "the live WebSocket failed (camera offline or not allowed)"));
      setTimeout(() => reject(new LiveError(0, "no live data over the WebSocket")), CONNECT_MS);
    });
    started.catch(() => {});
    ws.onmessage = (m) => {
      if (typeof m.data === "string") {
        const info = JSON.parse(m.data);
        if (info.type !== "init") return;
        if (!sb) {
          sb = ms.addSourceBuffer(info.mime);
          sb.mode = "sequence";
          sb.addEventListener("updateend", () => { this._keepLive(sb); pump(); });
        } else if (sb.changeType) {
          sb.changeType(info.mime);
        }
        return;
      }
      queue.push(m.data);
      this.lastData = performance.now();
      pump();
      firstData();
    };
    ws.onclose = () => { if (this.mode === "mse" && !this.closed) this.onended("websocket closed"); };
    await started;
    this.video.play().catch(() => {});
  }

  _keepLive(sb) {
    const v = this.video;
    if (!sb.buffered.length) return;
    const end = sb.buffered.end(sb.buffered.length - 1);
    if (end - v.currentTime > 1.0) v.currentTime = end - 0.15;  // stay at the live edge
    const start = sb.buffered.start(0);
    if (!sb.updating && v.currentTime - start > 20) {
      try { sb.remove(start, v.currentTime - 10); } catch { /* busy */ }
    }
  }

  /** Frames decoded so far by this element. */
  frames() {
    const q = this.video.getVideoPlaybackQuality?.();
    return q ? q.totalVideoFrames : 0;
  }

  /** Estimated delay from this server to the screen, in ms (null while unknown). See docs/console.md. */
  async measureDelay() {
    if (this.mode === "mse") {
      const b = this.video.buffered;
      if (!b.length) return null;
      this.delay = Math.max(0, Math.round((b.end(b.length - 1) - this.video.currentTime) * 1000));
      return this.delay;
    }
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    let jb = 0, emitted = 0, rtt = 0;
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") { jb = s.jitterBufferDelay || 0; emitted = s.jitterBufferEmittedCount || 0; }
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime) rtt = s.currentRoundTripTime;
    });
    const dj = jb - this._stats.jb, de = emitted - this._stats.emitted;
    this._stats = { jb, emitted };
    if (de > 0) this.delay = Math.round((dj / de) * 1000 + (rtt * 1000) / 2);
    return this.delay;
  }

  stop() {
    this.closed = true;
    clearInterval(this._renewer);
    this._closeWhep();
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    if (this.ms) {
      try { if (this.ms.readyState === "open") this.ms.endOfStream(); } catch { /* closed */ }
      URL.revokeObjectURL(this.video.src);
      this.video.removeAttribute("src");
      this.video.load();
      this.ms = null;
    }
  }
}
