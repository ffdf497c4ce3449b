// An offline tile says why (from the camera's status) and recovers by itself when the camera
// returns. The test stopped the camera before this runs and starts it again a little later.
import { env, scenario, signIn } from "./lib.mjs";

await scenario(async ({ page }) => {
  const camera = env("CAMERA");
  await page.goto(`${env("SHARPEYES_BASE")}/`);
  await page.evaluate((c) => localStorage.setItem("sharpeyes.wall", JSON.stringify({ n: 1, cells: [c] })), camera);
  await signIn(page, "viewer", env("SHARPEYES_PASSWORD"), "en");
  const tile = '.tile[data-index="0"]';
  await page.waitForSelector(`${tile}[data-state="offline"]`, { timeout: 30_000 });
  await page.waitForFunction((sel) => document.querySelector(`${sel} .why`).textContent.includes("why:"), tile, { timeout: 10_000 });
  const why = await page.textContent(`${tile} .why`);
  const badge = await page.textContent(`${tile} .badge`);
  // No reload, no click: the tile comes back when the camera does.
  await page.waitForFunction((sel) => {
    const t = document.querySelector(sel);
    return t.dataset.state === "live" && t.querySelector("video").getVideoPlaybackQuality().totalVideoFrames > 0;
  }, tile, { timeout: 60_000 });
  return { why, badge };
});
