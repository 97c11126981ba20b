// Finding the heedls language server: explicit command > interpreter setting > `heedls` on PATH >
// the workspace's own .venv (trusted workspaces only) > the Python extension's interpreter.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

export interface ServerLaunch {
  command: string;
  args: string[];
  /** Where the command came from, for the output channel and error messages. */
  source: string;
  /** The same installation's CLI prefix (`heedls …` commands such as telemetry export). */
  cli: string[];
}

export const INSTALL_HINT = 'python -m pip install /path/to/heedls';

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Why `launch` cannot start, when that is known before trying (a configured command that does not
 * exist): the extension then says so itself instead of letting the spawn fail with ENOENT.
 */
export function launchProblem(launch: ServerLaunch, cwd: string | undefined): string | undefined {
  const command = launch.command;
  const hasDir = command.includes('/') || (process.platform === 'win32' && command.includes('\\'));
  if (hasDir) {
    const full = path.isAbsolute(command) || !cwd ? command : path.join(cwd, command);
    return isExecutable(full) ? undefined : `\`${command}\` (${launch.source}) does not exist or is not executable`;
  }
  return whichOnPath(command) ? undefined : `\`${command}\` (${launch.source}) is not on PATH`;
}

export function whichOnPath(name: string, envPath = process.env.PATH ?? ''): string | undefined {
  const exts = process.platform === 'win32' ? ['.exe', '.cmd', '.bat', ''] : [''];
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) {
      continue;
    }
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      if (isExecutable(candidate)) {
        return candidate;
      }
    }
  }
  return undefined;
}

/** Does this interpreter have heedls importable? (5 s limit: never hangs activation.) */
export function hasHeedls(python: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(python, ['-P', '-c', 'import heedls'], { timeout: 5000 }, (err) => resolve(!err));
  });
}

function fromInterpreter(python: string, source: string): ServerLaunch {
  // -P: the working directory off sys.path (a `heedls` folder there would shadow the installed package)
  return { command: python, args: ['-P', '-m', 'heedls', 'serve'], source, cli: [python, '-P', '-m', 'heedls'] };
}

async function pythonExtensionInterpreter(resource: vscode.Uri | undefined): Promise<string | undefined> {
  const ext = vscode.extensions.getExtension('ms-python.python');
  if (!ext) {
    return undefined;
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const api: any = ext.isActive ? ext.exports : await ext.activate();
    const env = api?.environments?.getActiveEnvironmentPath?.(resource);
    if (env?.path) {
      const resolved = await api.environments.resolveEnvironment?.(env);
      return resolved?.executable?.uri?.fsPath ?? env.path;
    }
    const details = api?.settings?.getExecutionDetails?.(resource);
    return details?.execCommand?.[0];
  } catch {
    return undefined;
  }
}

function shown(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

/**
 * What is wrong with heedls.serverCommand / heedls.interpreter when settings.json gives them a value
 * of another type (VS Code only underlines it there): `"heedls.serverCommand": 42`, `[null]`, an
 * object. The extension says so instead of failing its activation on the value.
 */
export function settingProblem(): string | undefined {
  const cfg = vscode.workspace.getConfiguration('heedls');
  const command: unknown = cfg.get('serverCommand', []);
  const okCommand =
    command === undefined || command === null || typeof command === 'string' ||
    (Array.isArray(command) && command.every((p) => typeof p === 'string'));
  if (!okCommand) {
    return `the setting heedls.serverCommand must be a list of strings, e.g. ["/opt/heedls/bin/heedls", "serve"], not ${shown(command)}`;
  }
  const interpreter: unknown = cfg.get('interpreter', '');
  if (interpreter !== undefined && interpreter !== null && typeof interpreter !== 'string') {
    return `the setting heedls.interpreter must be the path of a Python interpreter (a string), not ${shown(interpreter)}`;
  }
  return undefined;
}

export async function resolveServer(): Promise<ServerLaunch | undefined> {
  const cfg = vscode.workspace.getConfiguration('heedls');
  const folder = vscode.workspace.workspaceFolders?.[0];

  // Values of another type are reported by settingProblem(); here they count as unset.
  const command: unknown = cfg.get('serverCommand', []);
  const parts = Array.isArray(command)
    ? command.filter((p): p is string => typeof p === 'string' && p.length > 0)
    : typeof command === 'string' && command.trim()
      ? [command.trim()]
      : [];
  if (parts.length > 0) {
    const cli = parts[parts.length - 1] === 'serve' ? parts.slice(0, -1) : [parts[0]];
    return { command: parts[0], args: parts.slice(1), source: 'setting heedls.serverCommand', cli };
  }

  const rawInterpreter: unknown = cfg.get('interpreter', '');
  const interpreter = typeof rawInterpreter === 'string' ? rawInterpreter.trim() : '';
  if (interpreter) {
    return fromInterpreter(interpreter, 'setting heedls.interpreter');
  }

  const onPath = whichOnPath('heedls');
  if (onPath) {
    return { command: onPath, args: ['serve'], source: `PATH (${onPath})`, cli: [onPath] };
  }

  // A workspace's own interpreter is workspace code: only consult it when the workspace is trusted.
  if (folder && vscode.workspace.isTrusted) {
    for (const venv of ['.venv', 'venv']) {
      const bin = process.platform === 'win32' ? path.join(venv, 'Scripts', 'python.exe') : path.join(venv, 'bin', 'python');
      const python = path.join(folder.uri.fsPath, bin);
      if (isExecutable(python) && (await hasHeedls(python))) {
        return fromInterpreter(python, `workspace ${venv}`);
      }
    }
  }

  const python = await pythonExtensionInterpreter(folder?.uri);
  if (python && (await hasHeedls(python))) {
    return fromInterpreter(python, `Python extension interpreter (${python})`);
  }
  return undefined;
}
