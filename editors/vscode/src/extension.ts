// heedls for VS Code: starts `heedls serve` over stdio and wires its custom protocol
// (docs/architecture.md "Custom protocol") into the editor.
import { type ChildProcess, spawn } from 'node:child_process';
import * as vscode from 'vscode';
import {
  CloseAction,
  type CloseHandlerResult,
  DidChangeConfigurationNotification,
  ErrorAction,
  type ErrorHandlerResult,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  RevealOutputChannelOn,
  type ServerOptions,
  State,
} from 'vscode-languageclient/node';
import * as commands from './commands';
import { INSTALL_HINT, launchProblem, resolveServer, settingProblem, type ServerLaunch } from './server';
import { RESTART_SETTINGS, SECTION, serverSettings, type ServerSettings } from './settings';
import { StatusItem, type ServerStatus } from './status';
import { RepairOnDemand } from './repair';
import { SuggestionTracker } from './suggestions';
import { pipeLines, pipeServerLog } from './serverLog';

const MAX_RESTARTS = 4;
const RESTART_WINDOW_MS = 3 * 60 * 1000;
const STATUS_POLL_MS = 15_000;
/** A server that has not answered initialize after this long gets a message (it may be stuck). */
const INITIALIZE_WARN_MS = 30_000;

/**
 * One start of the server (by activation, a settings change or the restart command) and the
 * restarts after its crashes: what the messages about it need to know.
 */
interface Attempt {
  launch: ServerLaunch;
  client?: HeedlsClient;
  /** The server process now (a restart after a crash spawns another). */
  process?: ChildProcess;
  /** How the process ended ("exited with code 1"), once it did. */
  exit?: Promise<string>;
  /** The last of what the process wrote to stderr. */
  stderr: string;
  /** The process answered initialize. */
  running: boolean;
  /** Its failure to start was reported (one message per process). */
  reported: boolean;
}

let attempt: Attempt | undefined;
let client: LanguageClient | undefined;
let launch: ServerLaunch | undefined;
let output: vscode.LogOutputChannel;
let trace: vscode.LogOutputChannel;
let status: StatusItem;
let tracker: SuggestionTracker;
let repair: RepairOnDemand;
let pollTimer: NodeJS.Timeout | undefined;

/** Exposed for the end-to-end tests and for other extensions. */
export interface HeedlsApi {
  client(): LanguageClient | undefined;
  launch(): ServerLaunch | undefined;
}

/**
 * vscode-languageclient pops up its own error notifications ("couldn't create connection to
 * server", "Restarting server failed", "connection to server is erroring") whatever
 * revealOutputChannelOn says. The extension shows its own message for each of those situations, so
 * here they only go to the output channel: a missing, slow or crashing server never shows a
 * protocol error.
 */
class HeedlsClient extends LanguageClient {
  attempt: Attempt | undefined;

  override error(message: string, data?: unknown, showNotification?: boolean | 'force'): void {
    super.error(message, data, false);
    if (showNotification === 'force' && message.startsWith('Restarting server failed') && this.attempt && this.attempt === attempt) {
      void startFailed(this.attempt, data);
    }
  }
}

/** How many restarts there were in the last RESTART_WINDOW_MS, this one included. */
function restartCounter(): () => number {
  const starts: number[] = [];
  return () => {
    const now = Date.now();
    while (starts.length && now - starts[0] > RESTART_WINDOW_MS) {
      starts.shift();
    }
    starts.push(now);
    return starts.length;
  };
}

/** The last line the server wrote to stderr (a traceback's last line says what went wrong). */
function lastLine(text: string): string {
  const lines = text.split(/\r?\n|\r/).map((l) => l.trim()).filter((l) => l.length > 0);
  const last = lines[lines.length - 1] ?? '';
  return last.length > 200 ? `${last.slice(0, 197)}...` : last;
}

/** "exited with code 1: ImportError: …", as far as known within a second of the close. */
async function howItEnded(at: Attempt): Promise<string> {
  const how = await Promise.race([
    at.exit ?? Promise.resolve('stopped'),
    new Promise<string>((resolve) => setTimeout(() => resolve('stopped'), 1000)),
  ]);
  const said = lastLine(at.stderr);
  return said ? `${how}: "${said}"` : how;
}

/**
 * The server ended (or could not be spawned) before it answered initialize. Restarting it would
 * fail the same way: say so once, with what it printed, and leave it stopped.
 */
async function startFailed(at: Attempt, error?: unknown): Promise<void> {
  if (at.reported) {
    return;
  }
  at.reported = true;
  status.setState('stopped');
  let how = await howItEnded(at);
  if (how === 'stopped' && error instanceof Error && error.message) {
    how = `failed to start (${error.message})`;
  }
  const message =
    `heedls: the server ${how}, before it started (${at.launch.source}). ` +
    `See the "heedls" output; \`${INSTALL_HINT}\` (re)installs it.`;
  output.error(message);
  void vscode.window.showErrorMessage(message, 'Show Output', 'Restart').then((choice) => {
    if (choice === 'Restart') {
      void vscode.commands.executeCommand('heedls.restartServer');
    } else if (choice === 'Show Output') {
      output.show();
    }
  });
}

/** The command of `at`, spawned here (not by languageclient) so that its stderr and exit are known
 * for the messages, and so that a server stuck before answering initialize can be ended. */
function spawnServer(at: Attempt, cwd: string | undefined): ChildProcess {
  const child = spawn(at.launch.command, at.launch.args, { cwd, env: process.env });
  at.process = child;
  at.stderr = '';
  at.running = false;
  at.reported = false;
  at.exit = new Promise<string>((resolve) => {
    child.on('error', (err) => resolve(`could not be started (${err.message})`));
    child.on('exit', (code, signal) => resolve(signal ? `was killed by ${signal}` : `exited with code ${code}`));
  });
  child.stderr?.on('data', (data: Buffer) => {
    at.stderr = (at.stderr + data.toString('utf8')).slice(-4000);
  });
  return child;
}

function alive(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}

/** End a server process that did not exit by itself (SIGTERM, then SIGKILL 2 s later). */
function kill(proc: ChildProcess): void {
  if (!alive(proc)) {
    return;
  }
  proc.kill('SIGTERM');
  setTimeout(() => {
    if (alive(proc)) {
      proc.kill('SIGKILL');
    }
  }, 2000).unref?.();
}

/** Suggestions toggled for this session (status bar, command): undefined until the user does. */
let sessionEnabled: boolean | undefined;

/** The settings for the server, with this session's toggle over heedls.inline.enabled: a server
 * restarted after a crash, or told of another settings change, keeps suggestions as toggled. */
function settingsNow(scope?: vscode.Uri): ServerSettings {
  const settings = serverSettings(scope);
  if (sessionEnabled !== undefined) {
    settings.inline = { ...((settings.inline as object | undefined) ?? {}), enabled: sessionEnabled };
  }
  return settings;
}

function clientOptions(at: Attempt): LanguageClientOptions {
  const restarts = restartCounter();
  return {
    documentSelector: [
      { scheme: 'file', language: 'python' },
      { scheme: 'untitled', language: 'python' },
    ],
    // A function: a restarted server gets the settings (and Workspace Trust) of now, not of the first start.
    initializationOptions: () => settingsNow(),
    // [tool.heedls] edited outside VS Code (git checkout, another editor) applies at once too. The
    // *.py files are watched by the server's own registration (client/registerCapability for
    // **/*.py after `initialized`): created, changed and deleted modules reach its index, and a
    // deleted or renamed module's diagnostics go. A watcher of ours for them sent each event twice.
    synchronize: {
      fileEvents: [vscode.workspace.createFileSystemWatcher('**/pyproject.toml')],
    },
    outputChannel: output,
    traceOutputChannel: trace,
    // The server's warnings at their level, not all of stderr as errors (serverLog.ts).
    stdioOptions: { stdout: pipeLines, stderr: pipeServerLog },
    // Failed requests are logged, never popped up: a slow or restarting server must not nag.
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    // languageclient pops up the bare error of a failed initialize ("Pending response rejected since
    // connection got disposed" when the server exits first): startFailed() says what happened instead.
    initializationFailedHandler: (error) => {
      output.error(`initialize failed: ${error instanceof Error ? error.message : String(error)}`);
      return false; // do not retry: languageclient stops the client, start() rejects
    },
    middleware: {
      ...tracker.middleware(),
      ...repair.middleware(),
      workspace: {
        // Servers that pull settings get the same object as initializationOptions; asked with a
        // scopeUri (heedls asks for each workspace folder), the settings of that folder.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (!Array.isArray(result)) {
            return result;
          }
          return params.items.map((item, i) =>
            item.section === SECTION
              ? settingsNow(item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined)
              : result[i],
          );
        },
      },
    },
    errorHandler: {
      error: (_error, _message, count): ErrorHandlerResult => ({
        action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
        handled: true, // logged; a shutdown ends in closed() below, which says what happened
      }),
      closed: async (): Promise<CloseHandlerResult> => {
        if (attempt !== at) {
          return { action: CloseAction.DoNotRestart, handled: true }; // replaced: ended on purpose
        }
        status.setState('stopped');
        if (!at.running) {
          // It never answered initialize (exits at once, a broken install): no restart loop.
          await startFailed(at);
          return { action: CloseAction.DoNotRestart, handled: true };
        }
        at.running = false;
        const how = await howItEnded(at);
        // Our own message (languageclient only logs its one): the user should know, once, briefly.
        const count = restarts();
        if (count <= MAX_RESTARTS) {
          output.warn(`the server ${how}; restarting it.`);
          if (count === 1) {
            void vscode.window.showWarningMessage('heedls: the server stopped unexpectedly and was restarted.');
          }
          return { action: CloseAction.Restart, handled: true };
        }
        const message = `heedls: the server crashed ${MAX_RESTARTS + 1} times in 3 minutes and was not restarted (it ${how}). See the "heedls" output, then run "heedls: Restart Language Server".`;
        output.error(message);
        void vscode.window.showErrorMessage(message, 'Restart', 'Show Output').then((choice) => {
          if (choice === 'Restart') {
            void vscode.commands.executeCommand('heedls.restartServer');
          } else if (choice === 'Show Output') {
            output.show();
          }
        });
        return { action: CloseAction.DoNotRestart, handled: true };
      },
    },
  };
}

/** Ask for an inline suggestion at the cursor of the active Python editor (as Alt+\ would). */
function askForSuggestion(): void {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== 'python' || !tracker.enabled) {
    return;
  }
  void vscode.commands.executeCommand('editor.action.inlineSuggest.trigger').then(undefined, () => undefined);
}

async function refreshStatus(): Promise<void> {
  if (!client || !client.isRunning()) {
    return;
  }
  try {
    const result = await client.sendRequest<ServerStatus>('heedls/status', {});
    status.setStatus(result ?? undefined);
    if (typeof result?.enabled === 'boolean') {
      tracker.enabled = result.enabled;
    }
  } catch {
    status.setStatus(undefined); // an older server without heedls/status: show the plain item
  }
}

/** Say (once per start attempt) that there is no server to start, and how to get one. Never waits
 * for the user: activation and settings changes go on while the notification is up. */
function missingServer(problem?: string): void {
  status.setState('missing');
  const message = problem
    ? `heedls: the server command ${problem}. Install heedls with \`${INSTALL_HINT}\`, or fix the setting.`
    : `heedls: the language server is not installed. Install it into your project's Python environment ` +
      `with \`${INSTALL_HINT}\`, or point the setting heedls.serverCommand (or heedls.interpreter) at it.`;
  output.appendLine(message);
  output.appendLine(`heedls: searched PATH=${process.env.PATH ?? ''}`);
  void vscode.window.showErrorMessage(message, 'Copy Install Command', 'Open Settings').then(async (choice) => {
    if (choice === 'Copy Install Command') {
      await vscode.env.clipboard.writeText(INSTALL_HINT);
    } else if (choice === 'Open Settings') {
      await vscode.commands.executeCommand('workbench.action.openSettings', 'heedls.serverCommand');
    }
  });
}

async function startClient(): Promise<void> {
  try {
    await startClientOrThrow();
  } catch (err) {
    // Nothing here may fail the activation (commands, the status item and settings changes go on).
    status.setState('stopped');
    output.error(`heedls: could not start the server: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}

async function startClientOrThrow(): Promise<void> {
  status.setState('starting');
  const wrong = settingProblem();
  if (wrong) {
    launch = undefined;
    status.setState('missing');
    const message = `heedls: ${wrong}. Fix it in settings.json (or clear it) and the server starts.`;
    output.error(message);
    void vscode.window.showErrorMessage(message, 'Open Settings').then(async (choice) => {
      if (choice === 'Open Settings') {
        await vscode.commands.executeCommand('workbench.action.openSettingsJson');
      }
    });
    return;
  }
  launch = await resolveServer();
  if (!launch) {
    missingServer();
    return;
  }
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const problem = launchProblem(launch, cwd);
  if (problem) {
    missingServer(problem);
    return;
  }
  output.appendLine(`heedls: starting ${[launch.command, ...launch.args].join(' ')} (from ${launch.source})`);
  const at: Attempt = { launch, stderr: '', running: false, reported: false };
  // `heedls serve` speaks stdio by default (no `--stdio` argument); the process is spawned by us.
  const serverOptions: ServerOptions = async () => spawnServer(at, cwd);
  const mine = new HeedlsClient('heedls', 'heedls', serverOptions, clientOptions(at));
  mine.attempt = at;
  at.client = mine;
  attempt = at;
  client = mine;
  mine.onDidChangeState((e) => {
    if (attempt !== at) {
      return; // a client being replaced: its states are not the server's any more
    }
    output.debug(`client state ${State[e.oldState]} -> ${State[e.newState]}`);
    if (e.newState === State.Running) {
      at.running = true;
      status.setState('running');
      void refreshStatus();
      // What was typed while the server (re)started got no suggestion (no provider was registered
      // then), and VS Code does not ask again by itself: ask once the client is fully up.
      const started = client;
      void started?.start().then(() => {
        if (client === started && client.isRunning()) {
          askForSuggestion();
        }
      }, () => undefined);
    } else if (e.newState === State.Stopped || e.newState === State.StartFailed) {
      status.setState('stopped'); // never "starting" for a start that failed
    } else {
      status.setState('starting');
    }
  });
  const slow = setTimeout(() => {
    if (attempt === at && !at.running && !at.reported) {
      const message =
        `heedls: the server has not answered for ${INITIALIZE_WARN_MS / 1000} s (${at.launch.source}). ` +
        'It may be stuck: see the "heedls" output, or restart it.';
      output.warn(message);
      void vscode.window.showWarningMessage(message, 'Restart', 'Show Output').then((choice) => {
        if (choice === 'Restart') {
          void vscode.commands.executeCommand('heedls.restartServer');
        } else if (choice === 'Show Output') {
          output.show();
        }
      });
    }
  }, INITIALIZE_WARN_MS);
  try {
    await mine.start();
  } catch (err) {
    if (attempt === at) {
      await startFailed(at, err);
    }
  } finally {
    clearTimeout(slow);
  }
}

async function stopClient(): Promise<void> {
  const old = attempt;
  attempt = undefined;
  client = undefined;
  if (!old?.client) {
    return;
  }
  const proc = old.process;
  let stopped = true;
  try {
    await old.client.stop(2000);
  } catch {
    // Not running: it crashed, or it never answered initialize (languageclient cannot stop a
    // client that is starting, and would leave that process behind).
    stopped = false;
  }
  if (proc && alive(proc)) {
    if (stopped) {
      setTimeout(() => kill(proc), 2000).unref?.(); // it got shutdown + exit: give it time to go
    } else {
      kill(proc);
    }
  }
}

function sendSettings(): void {
  if (client?.isRunning()) {
    client
      .sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: settingsNow() } })
      .catch(() => undefined);
  }
}

async function toggle(): Promise<void> {
  const want = !tracker.enabled;
  sessionEnabled = want;
  tracker.enabled = want;
  status.setEnabled(want);
  if (!want) {
    tracker.reject('dismissed');
    await vscode.commands.executeCommand('editor.action.inlineSuggest.hide');
  }
  if (client?.isRunning()) {
    try {
      const result = (await client.sendRequest(ExecuteCommandRequest.type, {
        command: 'heedls.toggleSuggestions',
        arguments: [want],
      })) as { enabled?: boolean } | null;
      if (typeof result?.enabled === 'boolean') {
        tracker.enabled = result.enabled;
        status.setEnabled(result.enabled);
      }
    } catch {
      /* the client-side switch alone still hides suggestions */
    }
  }
  void refreshStatus();
}

function withClient(fn: (c: LanguageClient) => Promise<void>): () => Promise<void> {
  return async () => {
    if (!client?.isRunning()) {
      void vscode.window.showWarningMessage('heedls: the server is not running.');
      return;
    }
    try {
      await fn(client);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      output.error(`heedls: a command failed: ${why}`);
      const code = (err as { code?: unknown } | undefined)?.code;
      if (code === -32800 || code === -32802 || err instanceof vscode.CancellationError) {
        return; // cancelled (the progress notification's Cancel): nothing to report
      }
      if (code === -32097 || code === -32096 || /connection got disposed|not running|is stopping/i.test(why)) {
        // The server stopped or restarted while the request was in flight (a crash, a settings
        // change, the window closing): say that, not the protocol's words.
        void vscode.window.showWarningMessage('heedls: the server stopped before it answered; try again once it is running.');
        return;
      }
      void vscode.window.showErrorMessage(`heedls: ${why}`);
    }
  };
}

export async function activate(context: vscode.ExtensionContext): Promise<HeedlsApi> {
  output = vscode.window.createOutputChannel('heedls', { log: true });
  trace = vscode.window.createOutputChannel('heedls trace', { log: true });
  status = new StatusItem();
  tracker = new SuggestionTracker(() => client);
  repair = new RepairOnDemand(() => client);
  tracker.enabled = vscode.workspace.getConfiguration(SECTION).get<unknown>('inline.enabled', true) !== false;
  status.setEnabled(tracker.enabled);
  const docs = new commands.VirtualDocs();

  context.subscriptions.push(
    output,
    trace,
    status,
    tracker,
    vscode.workspace.registerTextDocumentContentProvider(commands.EXPLAIN_SCHEME, docs),
    vscode.commands.registerCommand('heedls.toggle', toggle),
    vscode.commands.registerCommand('heedls.dismissSuggestion', async () => {
      tracker.reject('dismissed');
      await vscode.commands.executeCommand('editor.action.inlineSuggest.hide');
    }),
    vscode.commands.registerCommand('heedls.explainAtCursor', withClient((c) => commands.explainAtCursor(c, docs))),
    vscode.commands.registerCommand('heedls.fixAtCursor', withClient((c) => commands.fixAtCursor(c, docs))),
    vscode.commands.registerCommand('heedls.runTestsForFile', withClient(commands.runTests)),
    vscode.commands.registerCommand('heedls.showReport', withClient(commands.showReport)),
    vscode.commands.registerCommand('heedls.exportTelemetry', () => commands.exportTelemetry(launch)),
    vscode.commands.registerCommand('heedls.showOutput', () => output.show()),
    vscode.commands.registerCommand('heedls.restartServer', async () => {
      await stopClient();
      await startClient();
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (RESTART_SETTINGS.some((s) => e.affectsConfiguration(s))) {
        await stopClient();
        await startClient();
      } else if (e.affectsConfiguration(SECTION)) {
        if (e.affectsConfiguration('heedls.inline.enabled')) {
          sessionEnabled = undefined; // the setting, changed now, is what the user wants
          tracker.enabled = vscode.workspace.getConfiguration(SECTION).get<unknown>('inline.enabled', true) !== false;
          status.setEnabled(tracker.enabled);
        }
        sendSettings();
      }
    }),
    // Granting trust lets tests run from now on; the server learns it as a settings change.
    vscode.workspace.onDidGrantWorkspaceTrust(sendSettings),
    tracker.onDidResolve(() => void refreshStatus()),
    { dispose: () => pollTimer && clearInterval(pollTimer) },
  );
  pollTimer = setInterval(() => void refreshStatus(), STATUS_POLL_MS);

  // Not awaited: a server stuck before answering initialize must not keep the extension activating
  // (VS Code waits for that before it runs any heedls command, "Restart Language Server" included).
  void startClient();
  return { client: () => client, launch: () => launch };
}

export async function deactivate(): Promise<void> {
  if (pollTimer) {
    clearInterval(pollTimer);
  }
  await stopClient();
}
