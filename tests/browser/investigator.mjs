// Scenario 3: an investigator opens a camera's recordings, sees the gap the test made, seeks,
// steps frames, takes a snapshot, marks in/out, exports up to 30 s and downloads clip + manifest.
import path from "node:path";
import { ARTIFACTS, env, scenario, shot, signIn } from "./lib.mjs";

await scenario(async ({ page }) => {
  const camera = env("CAMERA");
  await signIn(page, "investigator", env("SHARPEYES_PASSWORD"), "en");
  await page.goto(`${env("SHARPEYES_BASE")}/#/playback?camera=${camera}`);
  await page.waitForSelector("#timeline rect.gap[data-reason]", { timeout: 15_000 });
  const gaps = await page.$$eval("#timeline rect.gap", (rs) => rs.map((r) => ({ reason: r.dataset.reason, title: r.textContent })));
  const runs = await page.evaluate(() => window.__playback.data.runs.map((r) => [r.start_ms, r.end_ms]));
  const gapSpans = await page.evaluate(() => window.__playback.data.gaps.map((g) => [g.start_ms, g.end_ms, g.reason]));

  // Click on the timeline at time `ms` (what a user does), then wait until the video plays there.
  const clickAt = async (ms) => {
    const { x, y } = await page.evaluate((t) => {
      const tl = window.__playback.timeline;
      const r = tl.svg.getBoundingClientRect();
      return { x: r.left + (tl.x(t) / tl.width()) * r.width, y: r.top + r.height / 2 };
    }, ms);
    await page.mouse.click(x, y);
    await page.waitForFunction((t) => {
      const pb = window.__playback;
      return pb.window && Math.abs(pb.now() - t) < 1500 && document.getElementById("pb-video").readyState >= 2;
    }, ms, { timeout: 15_000 });
  };

  const [r0s, r0e] = runs[0];
  const inMs = r0s + 2000;
  const outMs = Math.min(inMs + 30_000, r0e - 1000);
  // Seek into the middle of the first run and play a little at 2x.
  await clickAt(Math.round((inMs + outMs) / 2));
  await page.click('button.speed[data-speed="2"]');
  await page.waitForFunction(() => document.getElementById("pb-video").getVideoPlaybackQuality().totalVideoFrames > 5, null, { timeout: 15_000 });
  const seekedTo = await page.evaluate(() => window.__playback.now());
  // Frame step while paused.
  await page.click("#pb-play").catch(() => {});
  await page.evaluate(() => window.__playback.video.pause());
  const before = await page.evaluate(() => window.__playback.video.currentTime);
  await page.click("#pb-step");
  await page.waitForFunction((b) => window.__playback.video.currentTime > b, before, { timeout: 5000 });
  const stepped = (await page.evaluate(() => window.__playback.video.currentTime)) - before;
  // Snapshot.
  const [snap] = await Promise.all([page.waitForEvent("download"), page.click("#pb-snapshot")]);
  const snapFile = path.join(ARTIFACTS, "snapshot.jpg");
  await snap.saveAs(snapFile);
  // Mark in and out by seeking and pressing the buttons.
  await clickAt(inMs);
  await page.evaluate(() => window.__playback.video.pause());
  await page.click("#pb-markin");
  await clickAt(outMs);
  await page.evaluate(() => window.__playback.video.pause());
  await page.click("#pb-markout");
  const marks = await page.evaluate(() => [Number(document.getElementById("pb-in").dataset.ms), Number(document.getElementById("pb-out").dataset.ms)]);
  await page.fill("#pb-reason", "case 2026-041 browser test");
  await page.click("#pb-export");
  await page.waitForSelector('#pb-result[data-status="done"]', { timeout: 60_000 });
  await shot(page, "playback");
  const [clip] = await Promise.all([page.waitForEvent("download"), page.click("#pb-result .dl-clip")]);
  const clipFile = path.join(ARTIFACTS, "export.mp4");
  await clip.saveAs(clipFile);
  const [manifest] = await Promise.all([page.waitForEvent("download"), page.click("#pb-result .dl-manifest")]);
  const manifestFile = path.join(ARTIFACTS, "export.manifest.json");
  await manifest.saveAs(manifestFile);
  const listed = await page.$$eval("#exports tr", (rows) => rows.length);
  return { gaps, gapSpans, runs, seekedTo, stepped, marks, clipFile, manifestFile, snapFile, listed, clipName: clip.suggestedFilename() };
});
