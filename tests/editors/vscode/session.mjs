// What both code-server drivers (e2e.mjs, hostile.mjs) do the same way: the results file, logging,
// steps with screenshots, the command palette, the "heedls" output channel and the notifications.
// `page()` gives the driver's current playwright page (it is opened after the helpers are made).
import { readFileSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';

export function session(config, tag, page, { shotEveryStep = false, extensionHostLog = false } = {}) {
  const results = { steps: {} };
  const log = (...a) => console.error(`[${tag} ${new Date().toISOString().slice(11, 23)}]`, ...a);
  const save = () => writeFileSync(config.results, JSON.stringify(results, null, 2));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  mkdirSync(config.artifacts, { recursive: true });

  // One named step: its result (ok, seconds, what `fn` returned, or the error) saved at once; a
  // screenshot of a failed one (of every one with `shotEveryStep`).
  async function step(name, fn) {
    const started = Date.now();
    log(`step ${name}`);
    let failed = false;
    try {
      const detail = await fn();
      results.steps[name] = { ok: true, seconds: (Date.now() - started) / 1000, ...(detail ?? {}) };
    } catch (err) {
      failed = true;
      results.steps[name] = { ok: false, seconds: (Date.now() - started) / 1000, error: String(err?.stack ?? err).slice(0, 2000) };
      log(`step ${name} failed: ${err}`);
    }
    if (failed || shotEveryStep) {
      const file = `vscode-${shotEveryStep ? tag : 'failed'}-${name}.png`;
      await page()?.screenshot({ path: path.join(config.artifacts, file) }).catch(() => {});
    }
    save();
    return results.steps[name].ok;
  }

  async function runCommand(title) {
    const p = page();
    await p.keyboard.press('Control+Shift+P');
    const input = p.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible', timeout: 15000 });
    await input.fill(`>${title}`);
    await p.locator('.quick-input-list .monaco-list-row').first().waitFor({ timeout: 15000 });
    await sleep(200);
    await p.keyboard.press('Enter');
  }

  // The "heedls" output channel as code-server wrote it to disk (and the extension host's log).
  function outputChannel() {
    const found = [];
    const walk = (dir) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (entry.name === 'heedls.log' || (extensionHostLog && /exthost\.log$/.test(entry.name))) {
          found.push(readFileSync(full, 'utf8'));
        }
      }
    };
    try {
      walk(path.join(config.userDir, 'logs'));
    } catch { /* not written yet */ }
    return found.join('\n');
  }

  async function toastTexts() {
    return (await page().locator('.notifications-toasts .notification-toast').allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim());
  }

  // Chromium with the flags code-server needs on this host, a page (handed to `use` before anything
  // can fail), and the workbench loaded: step "workbench".
  async function openWorkbench(chromium, use) {
    const browser = await chromium.launch({
      executablePath: config.chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage'],
    });
    const p = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    p.setDefaultTimeout(20000);
    use(browser, p);
    await step('workbench', async () => {
      await p.goto(config.url, { waitUntil: 'domcontentloaded', timeout: 60000 });
      await p.locator('.monaco-workbench').waitFor({ timeout: 60000 });
      await p.locator('.statusbar').waitFor({ timeout: 30000 });
    });
  }

  return { results, log, save, sleep, step, runCommand, outputChannel, toastTexts, openWorkbench };
}
