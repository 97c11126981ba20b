// heedls for VS Code: starts `heedls serve` over stdio and wires its custom protocol
// (docs/architecture.md "Custom protocol") into the editor.
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
import { INSTALL_HINT, launchProblem, resolveServer, type ServerLaunch } from './server';
import { RESTART_SETTINGS, SECTION, serverSettings } from './settings';
import { StatusItem, type ServerStatus } from './status';
import { RepairOnDemand } from './repair';
import { SuggestionTracker } from './suggestions';

const MAX_RESTARTS = 4;
const RESTART_WINDOW_MS = 3 * 60 * 1000;
const STATUS_POLL_MS = 15_000;

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
  override error(message: string, data?: unknown, showNotification?: boolean | 'force'): void {
    super.error(message, data, false);
    if (showNotification === 'force' && message.startsWith('Restarting server failed')) {
      status.setState('stopped');
      void vscode.window.showErrorMessage(
        `heedls: the server could not be restarted. Run "heedls: Restart Language Server", or reinstall it with \`${INSTALL_HINT}\`.`,
      );
    }
  }
}

function restartCounter(): () => boolean {
  const starts: number[] = [];
  return () => {
    const now = Date.now();
    while (starts.length && now - starts[0] > RESTART_WINDOW_MS) {
      starts.shift();
    }
    starts.push(now);
    return starts.length <= MAX_RESTARTS;
  };
}

function clientOptions(): LanguageClientOptions {
  const mayRestart = restartCounter();
  return {
    documentSelector: [
      { scheme: 'file', language: 'python' },
      { scheme: 'untitled', language: 'python' },
    ],
    // A function: a restarted server gets the settings (and Workspace Trust) of now, not of the first start.
    initializationOptions: () => serverSettings(),
    // [tool.heedls] edited outside VS Code (git checkout, another editor) applies at once too. The
    // *.py files are watched by the server's own registration (client/registerCapability for
    // **/*.py after `initialized`): created, changed and deleted modules reach its index, and a
    // deleted or renamed module's diagnostics go. A watcher of ours for them sent each event twice.
    synchronize: {
      fileEvents: [vscode.workspace.createFileSystemWatcher('**/pyproject.toml')],
    },
    outputChannel: output,
    traceOutputChannel: trace,
    // Failed requests are logged, never popped up: a slow or restarting server must not nag.
    revealOutputChannelOn: RevealOutputChannelOn.Never,
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
              ? serverSettings(item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined)
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
      closed: (): CloseHandlerResult => {
        status.setState('stopped');
        // Our own message (languageclient only logs its one): the user should know, once, briefly.
        if (mayRestart()) {
          output.warn('the server stopped unexpectedly; restarting it.');
          void vscode.window.showWarningMessage('heedls: the server stopped unexpectedly and was restarted.');
          return { action: CloseAction.Restart, handled: true };
        }
        const message = `heedls: the server crashed ${MAX_RESTARTS + 1} times in 3 minutes and was not restarted. See the "heedls" output, then run "heedls: Restart Language Server".`;
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
  status.setState('starting');
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
  const serverOptions: ServerOptions = {
    command: launch.command,
    args: launch.args,
    // No `transport`: languageclient would append `--stdio`; `heedls serve` speaks stdio by default.
    options: { cwd, env: process.env },
  };
  client = new HeedlsClient('heedls', 'heedls', serverOptions, clientOptions());
  client.onDidChangeState((e) => {
    output.debug(`client state ${State[e.oldState]} -> ${State[e.newState]}`);
    if (e.newState === State.Running) {
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
    } else if (e.newState === State.Stopped) {
      status.setState('stopped');
    } else {
      status.setState('starting');
    }
  });
  try {
    await client.start();
  } catch (err) {
    status.setState('stopped');
    const why = err instanceof Error ? err.message : String(err);
    output.appendLine(`heedls: the server failed to start: ${why}`);
    void vscode.window.showErrorMessage(
      `heedls: the server failed to start (${launch.source}). ${INSTALL_HINT} installs it; see the "heedls" output for details.`,
    );
  }
}

async function stopClient(): Promise<void> {
  const old = client;
  client = undefined;
  if (old) {
    try {
      await old.stop(2000);
    } catch {
      /* already dead */
    }
  }
}

function sendSettings(): void {
  if (client?.isRunning()) {
    client
      .sendNotification(DidChangeConfigurationNotification.type, { settings: { [SECTION]: serverSettings() } })
      .catch(() => undefined);
  }
}

async function toggle(): Promise<void> {
  const want = !tracker.enabled;
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
  tracker.enabled = vscode.workspace.getConfiguration(SECTION).get<boolean>('inline.enabled', true);
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
          tracker.enabled = vscode.workspace.getConfiguration(SECTION).get<boolean>('inline.enabled', true);
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

  await startClient();
  return { client: () => client, launch: () => launch };
}

export async function deactivate(): Promise<void> {
  if (pollTimer) {
    clearInterval(pollTimer);
  }
  await stopClient();
}
