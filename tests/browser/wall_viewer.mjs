// Scenario 2: a viewer opens a 4-tile wall by dragging the county onto it; every tile decodes frames.
import { env, scenario, shot, signIn } from "./lib.mjs";

await scenario(async ({ page }) => {
  await signIn(page, "viewer", env("SHARPEYES_PASSWORD"));
  await page.waitForSelector('#region-tree [data-key="region:county"]');
  await page.click('button.layout[data-n="4"]');
  await page.dragAndDrop('#region-tree [data-key="region:county"]', '.tile[data-index="0"]');
  await page.waitForFunction(() => [...document.querySelectorAll(".tile")].every((t) => t.dataset.camera), null, { timeout: 10_000 });
  // Every tile's <video> reports decoded frames.
  await page.waitForFunction(() => [...document.querySelectorAll(".tile video")]
    .every((v) => v.getVideoPlaybackQuality().totalVideoFrames > 0), null, { timeout: 30_000 });
  const tiles = await page.$$eval(".tile", (ts) => ts.map((t) => ({
    camera: t.dataset.camera, state: t.dataset.state,
    frames: t.querySelector("video").getVideoPlaybackQuality().totalVideoFrames,
    mode: window.__wall.tiles[Number(t.dataset.index)].player?.mode,
    firstFrameMs: window.__wall.tiles[Number(t.dataset.index)].firstFrameMs,
    timing: window.__wall.tiles[Number(t.dataset.index)].player?.timing,
  })));
  // Let the badges show a delay, then photograph the wall.
  await page.waitForFunction(() => [...document.querySelectorAll(".tile .delay")].some((d) => d.textContent), null, { timeout: 10_000 }).catch(() => {});
  const delays = await page.$$eval(".tile .delay", (ds) => ds.map((d) => d.textContent));
  await shot(page, "wall");
  // The layout survives a reload.
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll(".tile").length === 4 && [...document.querySelectorAll(".tile")].every((t) => t.dataset.camera));
  const after = await page.$$eval(".tile", (ts) => ts.map((t) => t.dataset.camera));
  // Double-click a tile: the main stream full size.
  await page.dblclick('.tile[data-index="0"]');
  await page.waitForFunction(() => { const v = document.getElementById("big-video"); return v && v.getVideoPlaybackQuality().totalVideoFrames > 0; }, null, { timeout: 20_000 });
  await page.keyboard.press("Escape");
  // The MSE fallback (forced here; used by itself when WHEP fails) plays every tile too.
  await page.evaluate(() => localStorage.setItem("sharpeyes.live", "mse"));
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll(".tile").length === 4 && [...document.querySelectorAll(".tile video")]
    .every((v) => v.getVideoPlaybackQuality().totalVideoFrames > 0), null, { timeout: 30_000 });
  const mse = await page.evaluate(() => window.__wall.tiles.map((t) => t.player?.mode));
  const mseFirstFrameMs = await page.evaluate(() => window.__wall.tiles.map((t) => t.firstFrameMs));
  await page.evaluate(() => localStorage.removeItem("sharpeyes.live"));
  return { tiles, delays, after, mse, mseFirstFrameMs };
});
