// Hostile situations for the heedls extension in code-server, driven like e2e.mjs (same config
// file, same results format). The server is tests/editors/vscode/fake_server.py, switched between
// its modes by rewriting heedls.serverCommand in the remote's Machine/settings.json, as a user
// would in the Settings UI; the fake server logs every message it got (config.fakeLog, JSON lines).
// Usage: node hostile.mjs CONFIG.json
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { session } from './session.mjs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const require = createRequire(import.meta.url);
const { chromium } = require(require.resolve('playwright-core', { paths: [config.playwrightDir, process.cwd()] }));

let browser, page;
const { results, log, save, sleep, step, runCommand, outputChannel, toastTexts, openWorkbench } = session(config, 'hostile', () => page, { shotEveryStep: true, extensionHostLog: true });



/** Every notification so far (the notification center keeps those whose toast timed out). */
async function notifications() {
  await page.keyboard.press('Escape');
  await runCommand('Notifications: Show Notifications');
  await page.locator('.notifications-center').first().waitFor({ timeout: 10000 }).catch(() => {});
  await sleep(500);
  const rows = (await page.locator('.notifications-center .notification-list-item').allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim());
  await runCommand('Notifications: Clear All Notifications');
  await sleep(300);
  await page.keyboard.press('Escape');
  return rows;
}



function fakeLog() {
  if (!existsSync(config.fakeLog)) return [];
  return readFileSync(config.fakeLog, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].startsWith('Z');
  } catch {
    return false;
  }
}

function setServerCommand(value) {
  const settings = JSON.parse(readFileSync(config.machineSettings, 'utf8'));
  settings['heedls.serverCommand'] = value;
  writeFileSync(config.machineSettings, JSON.stringify(settings, null, 2));
}

const fake = (mode) => [config.python, config.fakeServer, mode, config.fakeLog];

async function statusItem() {
  const item = page.locator('.statusbar-item', { hasText: 'heedls' }).first();
  await item.waitFor({ timeout: 30000 });
  return { html: await item.innerHTML(), text: (await item.innerText()).trim(), label: (await item.getAttribute('aria-label')) ?? '' };
}

async function waitStatus(pattern, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let s;
  while (Date.now() < end) {
    s = await statusItem();
    if (pattern.test(s.html)) return s;
    await sleep(300);
  }
  throw new Error(`status item never matched ${pattern}: ${JSON.stringify(s)}`);
}

async function openFile(name) {
  await page.locator(`.explorer-folders-view [role="treeitem"][aria-label="${name}"]`).first().dblclick({ timeout: 15000 });
  await page.locator(`.tab.active[aria-label^="${name}"]`).first().waitFor({ timeout: 15000 });
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
}

async function hostileFlow() {
  await step('bad_type_command', async () => {
    // Machine settings: "heedls.serverCommand": 42 (hand-edited settings.json). One clear message,
    // a status item that is not spinning for ever, and the extension still answers its commands.
    await openFile(config.typingFile);
    const end = Date.now() + 30000;
    let status;
    while (Date.now() < end) {
      status = await statusItem();
      if (!/loading|spin/.test(status.html)) break;
      await sleep(500);
    }
    await sleep(1000);
    const toasts = await toastTexts();
    return { status, toasts, spinning: /loading|spin/.test(status.html),
      activationFailed: /Activating extension \W?heedls\.heedls\W? failed/.test(outputChannel()) };
  });

  await step('crash_loop', async () => {
    await notifications();
    setServerCommand(fake('crash'));
    // The loop this guards against started it 5 times in 0.25 s; a restart after a pause (the
    // languageclient's own policy) would show within these seconds as well.
    await sleep(12000);
    const spawnsAt30 = fakeLog().filter((e) => e.mode === 'crash' && e.started).length;
    await sleep(5000);
    const spawns = fakeLog().filter((e) => e.mode === 'crash' && e.started).length;
    const status = await statusItem();
    return { spawnsAt30, spawns, status, toasts: await toastTexts(), notifications: await notifications(),
      output: outputChannel().split('\n').filter((l) => /heedls/.test(l)).slice(-40) };
  });

  await step('hang_at_initialize', async () => {
    setServerCommand(fake('hang'));
    const end = Date.now() + 60000;
    let toasts = [];
    while (Date.now() < end) {
      toasts = await toastTexts();
      if (toasts.some((t) => /not answered|not started|no answer/i.test(t))) break;
      await sleep(1000);
    }
    const hung = fakeLog().filter((e) => e.mode === 'hang' && e.started).map((e) => e.pid);
    return { toasts, status: await statusItem(), hungPids: hung };
  });

  await step('hang_replaced', async () => {
    // The user fixes the setting: the hung process must not be left behind.
    const hung = fakeLog().filter((e) => e.mode === 'hang' && e.started).map((e) => e.pid);
    setServerCommand(fake('ok'));
    const status = await waitStatus(/codicon-(sparkle|circle-slash)/, 30000);
    await sleep(6000); // a stopped server is ended 2 s after its stop (SIGKILL 2 s after SIGTERM)
    // Every process started with the hanging command: the first, and any the replaced client started again.
    const everyHung = fakeLog().filter((e) => e.mode === 'hang' && e.started).map((e) => e.pid);
    return { status, hung, everyHung, hungAlive: everyHung.filter(alive), notifications: await notifications() };
  });

  await step('odd_status', async () => {
    // The fake server's heedls/status: negative and huge counts, a share of -350 %, a provider
    // name with Markdown in it.
    await runCommand('heedls: Toggle Inline Suggestions');
    await sleep(1500);
    await runCommand('heedls: Toggle Inline Suggestions');
    await sleep(2500);
    const status = await waitStatus(/codicon-(sparkle|circle-slash)/, 15000);
    await page.locator('.statusbar-item', { hasText: 'heedls' }).first().hover();
    await sleep(1500);
    const hover = (await page.locator('.monaco-hover, .workbench-hover, .custom-hover').allInnerTexts()).join(' ');
    await page.mouse.move(10, 10);
    return { status, hover };
  });

  await step('request_in_flight', async () => {
    // "Explain Error at Cursor" asked, and the server dies before it answers (the same happens to
    // a request in flight when the extension restarts the server or is deactivated).
    await notifications();
    await openFile(config.typingFile);
    await runCommand('heedls: Explain Error at Cursor');
    const end = Date.now() + 10000;
    while (Date.now() < end && !fakeLog().some((e) => e.method === 'heedls/explain')) await sleep(200);
    const asked = fakeLog().filter((e) => e.method === 'heedls/explain').map((e) => e.pid);
    if (!asked.length) throw new Error('the explain request never reached the server');
    process.kill(asked[asked.length - 1], 'SIGKILL');
    await waitStatus(/codicon-(sparkle|circle-slash)/, 30000);
    await sleep(2000);
    return { notifications: await notifications() };
  });

  await step('toggle_survives_restart', async () => {
    // Suggestions off (the status bar's toggle, for this session), then the server crashes and is
    // restarted: they stay off, and the new server is told so.
    await runCommand('heedls: Toggle Inline Suggestions');
    await waitStatus(/codicon-circle-slash/, 10000);
    const before = fakeLog().filter((e) => e.mode === 'ok' && e.started).map((e) => e.pid);
    const victim = before[before.length - 1];
    process.kill(victim, 'SIGKILL');
    const end = Date.now() + 30000;
    let fresh;
    while (Date.now() < end) {
      fresh = fakeLog().filter((e) => e.mode === 'ok' && e.started && !before.includes(e.pid)).map((e) => e.pid)[0];
      if (fresh && fakeLog().some((e) => e.pid === fresh && e.method === 'heedls/status')) break;
      await sleep(500);
    }
    if (!fresh) throw new Error('the server was not restarted after it was killed');
    await sleep(3000);
    const told = fakeLog().filter((e) => e.pid === fresh && (e.method === 'initialize' || e.method === 'workspace/executeCommand'
      || e.method === 'workspace/didChangeConfiguration'));
    const initInline = told.find((e) => e.method === 'initialize')?.params?.initializationOptions?.inline ?? null;
    const toggles = told.filter((e) => e.params?.command === 'heedls.toggleSuggestions').map((e) => e.params.arguments);
    const status = await statusItem();
    return { victim, fresh, initInline, toggles, status, off: /codicon-circle-slash/.test(status.html) };
  });

  await step('toggle_while_down', async () => {
    // The server gone for good (a command that exits at once), suggestions toggled on and off from
    // the command palette: no error, and the status item keeps saying the server is not running.
    setServerCommand(fake('crash'));
    await waitStatus(/codicon-(error|warning)/, 60000);
    await notifications();
    await runCommand('heedls: Toggle Inline Suggestions');
    await sleep(1000);
    await runCommand('heedls: Toggle Inline Suggestions');
    await sleep(1500);
    return { status: await statusItem(), toasts: await toastTexts() };
  });

  if (config.realServer) {
    await step('real_server_bad_settings', async () => {
      // The real server, with "heedls.inline.debounceMs": "fast" and "heedls.gate.keepAccepted": 5
      // in the user's settings.json: the server starts and says which settings it ignored.
      await notifications();
      setServerCommand(config.realServer);
      const status = await waitStatus(/codicon-(sparkle|circle-slash)/, 90000);
      const end = Date.now() + 20000; // VS Code writes the output channel's file a little later
      while (Date.now() < end && !/debounceMs/.test(outputChannel())) await sleep(500);
      const out = outputChannel().split('\n').filter((l) => /debounce|keepAccepted|keep_accepted/i.test(l));
      return { status, output: out.slice(-10), toasts: await toastTexts() };
    });
  }
}

try {
  await openWorkbench(chromium, (b, p) => { browser = b; page = p; });
  await hostileFlow();
} catch (err) {
  results.fatal = String(err?.stack ?? err);
  log(results.fatal);
} finally {
  save();
  await browser?.close().catch(() => {});
}
