// Drives Debian's chromium (puppeteer-core, no downloaded browser) through OHIF as a reader would, for
// tests/viewer/test_ohif.py: open the study, load the lesion SEG, the attention-levels SEG and the SR from
// the study browser, and record after each step a screenshot and what the page shows. The Python test
// makes the judgements; this script only observes. Usage: node ohif_check.mjs CONFIG.json
// CONFIG: {url, study, out, series: {lesion, levels, report}: study-browser labels, timeoutMs}
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const timeout = config.timeoutMs ?? 90000;
const result = { steps: {}, pageErrors: [], consoleErrors: [], failed: null };
const save = () => fs.writeFileSync(path.join(config.out, 'result.json'), JSON.stringify(result, null, 1));

const browser = await puppeteer.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  // Software WebGL (SwiftShader): CI machines have no GPU.
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
});

/** Everything the Python side needs to judge one step: viewport geometry, overlays, text. */
async function observe(page, name) {
  // Let the render loop settle: two animation frames after the last change.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await new Promise((r) => setTimeout(r, 1500));
  const shot = path.join(config.out, `${name}.png`);
  await page.screenshot({ path: shot });
  const seen = await page.evaluate(() => {
    const cs = window.cornerstone;
    const out = { geometry: null, segmentations: [], svgText: '', polylines: [], displaySets: [] };
    const element = cs?.getEnabledElements?.()[0];
    if (element) {
      const vp = element.viewport;
      const imageId = vp.getCurrentImageId();
      const rect = vp.canvas.getBoundingClientRect();
      const toPage = (x, y) => {
        const c = vp.worldToCanvas(cs.utilities.imageToWorldCoords(imageId, [x, y]));
        return [rect.left + c[0], rect.top + c[1]];
      };
      const image = cs.cache.getImage(imageId);
      const rows = image?.rows ?? 0;
      const columns = image?.columns ?? 0;
      out.geometry = {
        rect: [rect.left, rect.top, rect.width, rect.height],
        rows, columns, origin: toPage(0, 0), xEnd: toPage(columns, 0), yEnd: toPage(0, rows),
      };
      for (const svg of element.viewport.element.querySelectorAll('svg')) {
        const box = svg.getBoundingClientRect();
        for (const line of svg.querySelectorAll('polyline')) {
          const points = [];
          for (let i = 0; i < line.points.numberOfItems; i++) {
            const p = line.points.getItem(i);
            points.push([box.left + p.x, box.top + p.y]);
          }
          if (points.length > 2) out.polylines.push(points);
        }
      }
    }
    out.svgText = [...document.querySelectorAll('svg text')].map((t) => t.textContent).join('\n');
    const services = window.services;
    for (const s of services?.segmentationService?.getSegmentations?.() ?? []) {
      out.segmentations.push({
        label: s.label,
        segments: Object.values(s.segments ?? {}).filter(Boolean).map((seg) => seg.label),
      });
    }
    for (const ds of services?.displaySetService?.getActiveDisplaySets?.() ?? []) {
      out.displaySets.push({ Modality: ds.Modality, SOPClassUID: ds.SOPClassUID, unsupported: !!ds.unsupported });
    }
    out.pageText = document.body.innerText;
    return out;
  });
  result.steps[name] = { shot, ...seen };
  save();
}

/** Double-click a series in the study browser by the start of its description. */
async function openSeries(page, label) {
  const handle = await page.waitForFunction(
    (text) => [...document.querySelectorAll('*')]
      .find((e) => e.children.length === 0 && e.textContent.trim().startsWith(text)),
    { timeout }, label);
  await handle.asElement().click({ count: 2 });
}

async function clickButton(page, text) {
  const handle = await page.waitForFunction(
    (t) => [...document.querySelectorAll('button, [role=button]')].find((e) => e.textContent.trim() === t),
    { timeout }, text);
  await handle.asElement().click();
}

async function waitForSegmentations(page, count) {
  await page.waitForFunction(
    (n) => (window.services?.segmentationService?.getSegmentations?.() ?? []).length >= n, { timeout }, count);
}

try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 900, deviceScaleFactor: 1 });
  page.on('pageerror', (e) => result.pageErrors.push(String(e.message)));
  page.on('console', (m) => { if (m.type() === 'error') result.consoleErrors.push(m.text()); });

  await page.goto(`${config.url}/viewer?StudyInstanceUIDs=${config.study}`, { waitUntil: 'networkidle2', timeout });
  if (config.displaySetsOnly) {
    // Only which display sets OHIF made of the study (used with stock OHIF, to show its gap).
    await page.waitForFunction(
      (n) => (window.services?.displaySetService?.getActiveDisplaySets?.() ?? []).length >= n,
      { timeout }, config.displaySetsOnly);
    await observe(page, 'stock');
    throw null; // eslint-disable-line no-throw-literal
  }
  await page.waitForFunction(() => {
    const vp = window.cornerstone?.getEnabledElements?.()[0]?.viewport;
    return vp && vp.getCurrentImageId && vp.getCurrentImageId() && window.cornerstone.cache.getImage(vp.getCurrentImageId());
  }, { timeout });
  // OHIF's first-visit tour covers the viewport.
  await page.evaluate(() => {
    const skip = [...document.querySelectorAll('button, a, span, div')].find((e) => e.textContent.trim() === 'Skip all');
    if (skip) skip.click();
  });
  await observe(page, 'source');

  await openSeries(page, config.series.lesion);
  await clickButton(page, 'Yes');
  await waitForSegmentations(page, 1);
  await observe(page, 'lesion-seg');

  await openSeries(page, config.series.levels);
  await clickButton(page, 'Yes');
  await waitForSegmentations(page, 2);
  await observe(page, 'attention-levels');

  await openSeries(page, config.series.report);
  await page.waitForFunction(
    () => document.querySelectorAll('svg polyline').length > 0 || /Something went wrong/.test(document.body.innerText),
    { timeout });
  // Zoom out a little: OHIF puts the label box beside the outline, partly outside the viewport.
  const zoomed = await page.waitForFunction(() => {
    const vp = window.cornerstone.getEnabledElements()[0]?.viewport;
    if (!vp?.getCurrentImageId?.() || !document.querySelector('svg polyline')) return false;
    vp.setZoom(vp.getZoom() * 0.6);
    vp.render();
    return true;
  }, { timeout });
  await zoomed.dispose();
  await observe(page, 'report');
} catch (e) {
  if (e !== null) result.failed = String(e?.stack ?? e);
  save();
} finally {
  await browser.close();
}
save();
