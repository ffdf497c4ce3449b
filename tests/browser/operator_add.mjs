// Scenario 1: an operator adds a camera through the form (the probe shows its resolution) and
// sees it go live on the wall within 15 s (keyboard: select a tile, pick the camera, Enter).
import { env, scenario, shot, signIn } from "./lib.mjs";

await scenario(async ({ page }) => {
  await signIn(page, "operator", env("SHARPEYES_PASSWORD"));
  await page.click("#nav-cameras");
  await page.waitForSelector("#cam-rows tr");
  await page.click("#cam-add");
  await page.fill("#f-id", "cam-new");
  await page.fill("#f-name", "New Gate");
  await page.selectOption("#f-region", "v1");
  await page.fill("#f-main_url", env("NEW_CAMERA_URL"));
  await page.click("#probe");
  await page.waitForSelector("#probe-result.ok", { timeout: 20_000 });
  const probe = await page.textContent("#probe-result");
  await page.click("#cam-save");
  await page.waitForSelector('#cam-rows tr[data-id="cam-new"]');
  const saved = Date.now();
  // Bulk import with two bad rows: nothing is imported and each bad row is reported.
  await page.click("#cam-import");
  await page.fill("#imp-text", "id,name,region,main_url\ncam-imp1,Imported 1,v1,rtsp://10.0.0.1/a\nBAD ID,Bad,v1,rtsp://10.0.0.2/a\ncam-imp3,Wrong scheme,v1,ftp://10.0.0.3/a\n");
  await page.click("#imp-go");
  await page.waitForSelector("#imp-report table tbody tr");
  const importErrors = await page.$$eval("#imp-report tbody tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  // The wall: 1-tile layout, focus the tile, then the camera in the tree, Enter.
  await page.click("#nav-wall");
  await page.waitForSelector('button.layout[data-n="1"]');
  await page.click('button.layout[data-n="1"]');
  await page.focus('.tile[data-index="0"]');
  await page.waitForSelector('#region-tree [data-key="camera:cam-new"]', { timeout: 10_000 });
  await page.focus('#region-tree [data-key="camera:cam-new"]');
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => {
    const t = document.querySelector('.tile[data-index="0"]');
    return t.dataset.camera === "cam-new" && t.dataset.state === "live" && t.querySelector("video").getVideoPlaybackQuality().totalVideoFrames > 0;
  }, null, { timeout: 15_000 });
  const liveAfterMs = Date.now() - saved;
  const counts = await page.textContent('#region-tree [data-region="v1"]');
  // Health page for the screenshot and a sanity check.
  await page.click("#nav-health");
  await page.waitForSelector("#coverage-chart rect.bar", { state: "attached", timeout: 15_000 });
  const online = await page.textContent("#online-rate");
  await shot(page, "health");
  return { probe, liveAfterMs, counts, online, importErrors };
});
