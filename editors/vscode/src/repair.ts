// Validated fixes in the light bulb. The server offers "Fix: … (tests pass)" code actions only for
// repairs it has already validated (a `heedls/fix` run for the document's current text). When the
// user explicitly asks for quick fixes (Ctrl+. or the light bulb) on a failing test's diagnostic and
// none is known yet, start that search in the background and reopen the quick-fix menu once a fix
// passed the tests — what a user expects from a light bulb, without running repairs on every
// cursor move (automatic code-action requests never start one).
import * as vscode from 'vscode';
import type { LanguageClient, Middleware } from 'vscode-languageclient/node';

interface FixResult {
  fixed?: boolean;
  explanation?: string;
}

const TEST_SOURCES = /pytest|test/i;

export class RepairOnDemand {
  private readonly searching = new Map<string, number>(); // uri -> document version being repaired
  private readonly failed = new Map<string, number>(); // uri -> version for which no fix exists

  constructor(private readonly getClient: () => LanguageClient | undefined) {}

  middleware(): Middleware {
    return {
      provideCodeActions: async (document, range, context, token, next) => {
        const actions = (await next(document, range, context, token)) ?? [];
        if (context.triggerKind !== vscode.CodeActionTriggerKind.Invoke || !vscode.workspace.isTrusted) {
          return actions;
        }
        const failing = context.diagnostics.some((d) => TEST_SOURCES.test(String(d.source ?? '')) && d.severity === vscode.DiagnosticSeverity.Error);
        const validated = actions.some((a) => 'title' in a && /tests pass/.test(a.title));
        if (failing && !validated) {
          this.search(document, range);
        }
        return actions;
      },
    };
  }

  private search(document: vscode.TextDocument, range: vscode.Range): void {
    const client = this.getClient();
    const uri = document.uri.toString();
    const version = document.version;
    if (!client?.isRunning() || this.searching.get(uri) === version || this.failed.get(uri) === version) {
      return;
    }
    this.searching.set(uri, version);
    const params = {
      textDocument: { uri },
      position: { line: range.start.line, character: range.start.character },
    };
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'heedls: searching for a fix the tests accept…', cancellable: true },
      async (_progress, token) => {
        let result: FixResult | undefined;
        try {
          result = await client.sendRequest<FixResult>('heedls/fix', params, token);
        } catch {
          result = undefined;
        } finally {
          this.searching.delete(uri);
        }
        const editor = vscode.window.activeTextEditor;
        if (token.isCancellationRequested || document.version !== version) {
          return;
        }
        if (!result?.fixed) {
          this.failed.set(uri, version);
          void vscode.window.showInformationMessage(`heedls: no fix passed the tests. ${result?.explanation ?? ''}`);
          return;
        }
        // The fix is now among the code actions: show them again where the user asked.
        if (editor && editor.document === document && editor.selection.active.line >= range.start.line - 1 && editor.selection.active.line <= range.end.line + 1) {
          await vscode.commands.executeCommand('editor.action.quickFix');
        }
      },
    );
  }
}
