// Shared by the scenario scripts: launch Debian's Chromium through playwright-core, sign in,
// report results as JSON on stdout (pytest reads the last line), screenshots under tests/artifacts.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

export const BASE = process.env.SHARPEYES_BASE;
export const ARTIFACTS = process.env.SHARPEYES_ARTIFACTS || path.resolve("tests/artifacts");

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on("console", (m) => { if (["error", "warning"].includes(m.type())) console.error(`[browser ${m.type()}] ${m.text()}`); });
  page.on("pageerror", (e) => console.error(`[page error] ${e.message}`));
  return { browser, context, page };
}

export async function signIn(page, user, password, lang = "zh-CN") {
  await page.goto(`${BASE}/`);
  await page.evaluate((l) => localStorage.setItem("sharpeyes.lang", l), lang);
  await page.reload();
  await page.fill("#username", user);
  await page.fill("#password", password);
  await page.click("#signin");
  await page.waitForSelector("#me-role");
}

export async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** Run `fn` with a browser; print {"ok": true, ...result} or {"ok": false, "error"} as the last line. */
export async function scenario(fn) {
  const b = await launch();
  let code = 0;
  try {
    const result = await fn(b);
    console.log(JSON.stringify({ ok: true, ...result }));
  } catch (e) {
    await shot(b.page, `failure-${path.basename(process.argv[1], ".mjs")}`).catch(() => {});
    console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
    code = 1;
  } finally {
    await b.browser.close();
  }
  process.exit(code);
}

export function env(name) {
  const v = process.env[name];
  if (v === undefined) throw new Error(`set ${name}`);
  return v;
}
