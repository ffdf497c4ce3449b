// GB/T 28181 devices page: an operator sees a device SIPp registered (now offline after its
// keepalives stopped, with the reason), a refused one, the doctor findings, and on the cameras
// page the channel whose CivilCode is not a registered region says so.
import { env, scenario, shot, signIn } from "./lib.mjs";

await scenario(async ({ page }) => {
  await signIn(page, "operator", env("SHARPEYES_PASSWORD"));
  await page.click("#nav-gb");
  await page.waitForSelector(`#gb-rows tr[data-id="${env("GB_DEVICE")}"]`);
  await page.waitForFunction((id) => document.querySelector(`#gb-rows tr[data-id="${id}"]`).dataset.state === "offline",
    env("GB_DEVICE"), { timeout: 20_000 });
  const rows = await page.$$eval("#gb-rows tr[data-id]", (trs) => trs.map((tr) => ({
    id: tr.dataset.id, state: tr.dataset.state, stateText: tr.querySelector(".gb-state").textContent,
    reason: tr.querySelector(".gb-reason").textContent, cells: [...tr.cells].map((c) => c.textContent) })));
  await page.click(`#gb-rows tr[data-id="${env("GB_DEVICE")}"] button.link`);
  await page.waitForSelector(`#gb-rows tr.gb-doctor[data-for="${env("GB_DEVICE")}"] li`);
  const doctor = await page.$$eval(`#gb-rows tr.gb-doctor li`, (lis) => lis.map((li) => li.textContent));
  const server = await page.textContent("#gb-server");
  await shot(page, "gb-devices");
  await page.click("#nav-cameras");
  await page.waitForSelector("#cam-rows tr .region-note");
  const notes = await page.$$eval("#cam-rows tr", (trs) => trs.map((tr) => [tr.dataset.id, tr.querySelector(".region-note")?.textContent ?? null]));
  return { rows, doctor, server, notes };
});
