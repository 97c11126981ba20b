// The settings the server understands, built from VS Code's `heedls.*` settings.
//
// The server (server/config.py) takes camelCase keys under the same section names as its typed
// config (provider, inline, gate, tests, lint, repair, telemetry); names that read better in the Settings UI are
// mapped here (tests.timeoutSeconds -> tests.timeoutS). Workspace Trust becomes tests.trusted: the
// server never runs tests (which execute workspace code) in an untrusted workspace.
import * as vscode from 'vscode';

export const SECTION = 'heedls';

export interface ServerSettings {
  [key: string]: unknown;
}

function pick<T>(cfg: vscode.WorkspaceConfiguration, key: string): T | undefined {
  // Only forward values the user set somewhere: unset ones keep the server's own defaults
  // (and the workspace's pyproject.toml [tool.heedls], which sits below editor settings).
  const info = cfg.inspect<T>(key);
  if (!info) {
    return undefined;
  }
  const explicit =
    info.workspaceFolderValue ?? info.workspaceValue ?? info.globalValue ??
    info.workspaceFolderLanguageValue ?? info.workspaceLanguageValue ?? info.globalLanguageValue;
  return explicit as T | undefined;
}

function compact(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined) {
      out[k] = v;
    }
  }
  return out;
}

/**
 * The settings for the window (no `scope`) or for one workspace folder (`scope`: the folder's URI,
 * as the server asks with workspace/configuration's scopeUri). A folder's answer has the folder's
 * own values (its `.vscode/settings.json`) over the workspace's and the user's; the server takes
 * only its lint, tests and repair sections (the `resource` settings), the rest is the window's.
 */
export function serverSettings(scope?: vscode.Uri): ServerSettings {
  const cfg = vscode.workspace.getConfiguration(SECTION, scope);
  const settings: ServerSettings = {
    inline: compact({
      enabled: pick<boolean>(cfg, 'inline.enabled'),
      debounceMs: pick<number>(cfg, 'inline.debounceMs'),
    }),
    provider: compact({
      name: pick<string>(cfg, 'provider.name'),
      endpoint: pick<string>(cfg, 'provider.endpoint'),
      model: pick<string>(cfg, 'provider.model'),
      apiKeyEnv: pick<string>(cfg, 'provider.apiKeyEnv'),
      mode: pick<string>(cfg, 'provider.mode'),
      fimTemplate: pick<string>(cfg, 'provider.fimTemplate'),
      maxTokens: pick<number>(cfg, 'provider.maxTokens'),
      temperature: pick<number>(cfg, 'provider.temperature'),
      deadlineMs: pick<number>(cfg, 'provider.deadlineMs'),
    }),
    gate: compact({
      mode: pick<string>(cfg, 'gate.mode'),
      keepAccepted: pick<number>(cfg, 'gate.keepAccepted'),
    }),
    tests: compact({
      enabled: pick<boolean>(cfg, 'tests.enabled'),
      onSave: pick<boolean>(cfg, 'tests.onSave'),
      timeoutS: pick<number>(cfg, 'tests.timeoutSeconds'),
      python: pick<string>(cfg, 'tests.python'),
      // Always sent: an untrusted workspace must never run its tests, whatever pyproject says.
      trusted: vscode.workspace.isTrusted,
    }),
    lint: compact({
      enabled: pick<boolean>(cfg, 'lint.enabled'),
    }),
    repair: compact({
      enabled: pick<boolean>(cfg, 'repair.enabled'),
    }),
    telemetry: compact({
      enabled: pick<boolean>(cfg, 'telemetry.enabled'),
      privacy: pick<string>(cfg, 'telemetry.privacy'),
      maxSizeMb: pick<number>(cfg, 'telemetry.maxSizeMb'),
    }),
  };
  const logLevel = pick<string>(cfg, 'logLevel');
  if (logLevel !== undefined) {
    settings.logLevel = logLevel;
  }
  for (const key of Object.keys(settings)) {
    const value = settings[key];
    if (value && typeof value === 'object' && Object.keys(value).length === 0) {
      delete settings[key];
    }
  }
  return settings;
}

/** Settings that need a server restart (they decide which process is started). */
export const RESTART_SETTINGS = ['heedls.serverCommand', 'heedls.interpreter'];
