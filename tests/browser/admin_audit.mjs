// An admin searches the audit table for exports: the investigator's export is there.
import { env, scenario, signIn } from "./lib.mjs";

await scenario(async ({ page }) => {
  await signIn(page, "admin", env("SHARPEYES_PASSWORD"), "en");
  await page.click("#nav-audit");
  await page.waitForSelector("#audit-rows tr");
  await page.fill("#audit-action", "export");
  await page.fill("#audit-user", "investigator");
  await page.press("#audit-user", "Enter");
  await page.waitForFunction(() => [...document.querySelectorAll("#audit-rows tr")].every((r) => r.cells[3].textContent === "export"));
  const rows = await page.$$eval("#audit-rows tr", (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  return { rows };
});
