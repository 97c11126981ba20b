// User commands. Server-side commands (heedls.accept, heedls.toggleSuggestions, heedls.runTests,
// heedls.report) are registered by vscode-languageclient from the server's executeCommandProvider,
// so the client-side ones here carry different ids.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { ExecuteCommandRequest, type LanguageClient } from 'vscode-languageclient/node';
import type { ServerLaunch } from './server';

export const EXPLAIN_SCHEME = 'heedls-explain';

interface Explanation {
  message?: string;
  explanation?: string;
  range?: { start: { line: number; character: number } };
}

interface FixResult {
  fixed?: boolean;
  patch?: string;
  edit?: unknown;
  explanation?: string;
}

/** Read-only virtual documents for explanations and patches (no "save?" prompt on close). */
export class VirtualDocs implements vscode.TextDocumentContentProvider {
  private readonly docs = new Map<string, string>();
  private counter = 0;
  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.docs.get(uri.toString()) ?? '';
  }
  async open(name: string, content: string, language: string): Promise<void> {
    const uri = vscode.Uri.from({ scheme: EXPLAIN_SCHEME, path: `/${++this.counter}/${name}` });
    this.docs.set(uri.toString(), content);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.languages.setTextDocumentLanguage(doc, language);
    await vscode.window.showTextDocument(doc, { viewColumn: vscode.ViewColumn.Beside, preview: true, preserveFocus: true });
  }
}

export function explanationsMarkdown(explanations: Explanation[]): string {
  return explanations
    .map((e) => {
      const where = e.range ? ` (line ${e.range.start.line + 1})` : '';
      return `## ${e.message ?? 'Problem'}${where}\n\n${e.explanation ?? ''}\n`;
    })
    .join('\n');
}

export function cursorParams(editor: vscode.TextEditor): object {
  const pos = editor.selection.active;
  return {
    textDocument: { uri: editor.document.uri.toString() },
    position: { line: pos.line, character: pos.character },
  };
}

export async function explainAtCursor(client: LanguageClient, docs: VirtualDocs): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    return;
  }
  const result = await client.sendRequest<{ explanations?: Explanation[] }>('heedls/explain', cursorParams(editor));
  const explanations = result?.explanations ?? [];
  if (explanations.length === 0) {
    void vscode.window.showInformationMessage('heedls: no problem to explain at the cursor.');
    return;
  }
  await docs.open('explanation.md', explanationsMarkdown(explanations), 'markdown');
}

export async function fixAtCursor(client: LanguageClient, docs: VirtualDocs): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    return;
  }
  if (!vscode.workspace.isTrusted) {
    await untrustedMessage('validate fixes');
    return;
  }
  if (editor.document.isDirty) {
    await editor.document.save();
  }
  const result = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'heedls: searching for a fix the tests accept…', cancellable: true },
    (_progress, token) => client.sendRequest<FixResult>('heedls/fix', cursorParams(editor), token),
  );
  if (!result?.fixed || !result.edit) {
    void vscode.window.showInformationMessage(`heedls: no validated fix found.${result?.explanation ? ' ' + result.explanation : ''}`);
    return;
  }
  const choice = await vscode.window.showInformationMessage(
    `heedls found a fix that makes the failing tests pass. ${result.explanation ?? ''}`,
    'Apply',
    'Show Patch',
  );
  if (choice === 'Show Patch') {
    await docs.open('fix.diff', result.patch ?? '', 'diff');
    const again = await vscode.window.showInformationMessage('Apply the heedls fix?', 'Apply');
    if (again !== 'Apply') {
      return;
    }
  } else if (choice !== 'Apply') {
    return;
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const edit = await client.protocol2CodeConverter.asWorkspaceEdit(result.edit as any);
  if (!edit || !(await vscode.workspace.applyEdit(edit))) {
    void vscode.window.showErrorMessage('heedls: the fix could not be applied (the file changed meanwhile?).');
  }
}

export async function untrustedMessage(what: string): Promise<void> {
  const choice = await vscode.window.showWarningMessage(
    `heedls does not ${what} in an untrusted workspace: that would run the workspace's code.`,
    'Manage Workspace Trust',
  );
  if (choice) {
    await vscode.commands.executeCommand('workbench.trust.manage');
  }
}

export async function runTests(client: LanguageClient): Promise<void> {
  if (!vscode.workspace.isTrusted) {
    await untrustedMessage('run tests');
    return;
  }
  const uri = vscode.window.activeTextEditor?.document.uri.toString();
  await client.sendRequest(ExecuteCommandRequest.type, { command: 'heedls.runTests', arguments: uri ? [uri] : [] });
}

export async function showReport(client: LanguageClient): Promise<void> {
  const result = (await client.sendRequest(ExecuteCommandRequest.type, { command: 'heedls.report', arguments: [] })) as
    | { html?: string }
    | null;
  if (!result?.html || !fs.existsSync(result.html)) {
    void vscode.window.showWarningMessage('heedls: the server wrote no report (no telemetry yet?).');
    return;
  }
  const panel = vscode.window.createWebviewPanel('heedls.report', 'heedls acceptance report', vscode.ViewColumn.Active, {
    enableScripts: false,
  });
  panel.webview.html = fs.readFileSync(result.html, 'utf8');
}

function run(cmd: string, args: string[], cwd: string | undefined): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stderr: String(stderr) });
    });
  });
}

export async function exportTelemetry(launch: ServerLaunch | undefined): Promise<void> {
  if (!launch) {
    void vscode.window.showErrorMessage('heedls: the server is not installed, nothing to export.');
    return;
  }
  const format = await vscode.window.showQuickPick(['jsonl', 'csv', 'parquet'], { title: 'Export format' });
  if (!format) {
    return;
  }
  const privacy = await vscode.window.showQuickPick(
    [
      { label: 'nocode', description: 'no code: lengths and features only (safe to share)' },
      { label: 'full', description: 'includes the code around each suggestion' },
    ],
    { title: 'Privacy level' },
  );
  if (!privacy) {
    return;
  }
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  const target = await vscode.window.showSaveDialog({
    defaultUri: folder ? vscode.Uri.joinPath(folder, `heedls-events.${format}`) : undefined,
    filters: { [format]: [format] },
  });
  if (!target) {
    return;
  }
  const [cmd, ...prefix] = launch.cli;
  // The export reads the store of the workspace it runs in: run it in the workspace folder.
  const args = [...prefix, 'telemetry', 'export', '--format', format, '--privacy', privacy.label, '-o', target.fsPath];
  let result = await run(cmd, args, folder?.fsPath);
  if (result.code !== 0 && /no such option.*privacy/i.test(result.stderr)) {
    result = await run(cmd, args.filter((a, i) => a !== '--privacy' && args[i - 1] !== '--privacy'), folder?.fsPath);
  }
  if (result.code === 0) {
    void vscode.window.showInformationMessage(`heedls: telemetry exported to ${target.fsPath}`);
  } else {
    void vscode.window.showErrorMessage(`heedls: export failed: ${result.stderr.trim().split('\n').pop() ?? 'unknown error'}`);
  }
}
