// Scenario 4: a viewer scoped to East Town sees neither West Town nor its cameras, and a forged
// request for one of them is answered like an unknown camera.
import { env, scenario, signIn } from "./lib.mjs";

await scenario(async ({ page }) => {
  // A layout saved in this browser by someone who could see cam-d.
  await page.goto(`${process.env.SHARPEYES_BASE}/`);
  await page.evaluate(() => localStorage.setItem("sharpeyes.wall", JSON.stringify({ n: 4, cells: ["cam-d", "cam-a", null, null] })));
  await signIn(page, "eastviewer", env("SHARPEYES_PASSWORD"));
  await page.waitForSelector('#region-tree [data-key="camera:cam-a"]');
  const keys = await page.$$eval("#region-tree [role=treeitem]", (items) => items.map((i) => i.dataset.key));
  const treeText = await page.textContent("#region-tree");
  const wall = await page.$$eval(".tile", (ts) => ts.map((t) => t.dataset.camera || null));
  const forged = await page.evaluate(async () => {
    const auth = { Authorization: `Bearer ${sessionStorage.getItem("sharpeyes.token")}` };
    const out = {};
    for (const id of ["cam-d", "cam-zz"]) {
      const camera = await fetch(`/api/cameras/${id}`, { headers: auth });
      const whep = await fetch(`/api/cameras/${id}/whep?stream=main`, { method: "POST", headers: { ...auth, "Content-Type": "application/sdp" }, body: "v=0\r\n" });
      out[id] = { camera: camera.status, camera_body: await camera.text(), whep: whep.status };
    }
    return out;
  });
  const scope = await page.textContent("#me-scope");
  return { keys, treeText, wall, forged, scope };
});
