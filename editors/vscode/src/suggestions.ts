// Tells the server what happened to each inline suggestion, so the acceptance gate learns:
//   shown      - the first heedls item of a response that VS Code could display
//   accepted   - VS Code runs the item's own command `heedls.accept(id)` (nothing to do here
//                beyond forgetting the item)
//   rejected   - Esc (`dismissed`), a new request replacing it (`superseded`, or `typed-over` when
//                the user typed something other than the suggestion), editor switched (`dismissed`)
// VS Code's stable API has no "shown"/"dismissed" events for inline completions, hence the
// middleware on provideInlineCompletionItems and our own Esc keybinding.
import * as vscode from 'vscode';
import type { LanguageClient, Middleware } from 'vscode-languageclient/node';

export const ACCEPT_COMMAND = 'heedls.accept';

interface Shown {
  id: string;
  uri: string;
  line: number;
  character: number;
  /** Document text from the line start to the cursor when shown. */
  linePrefix: string;
  text: string;
}

export type RejectReason = 'dismissed' | 'superseded' | 'typed-over';

export class SuggestionTracker implements vscode.Disposable {
  private current: Shown | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  /** Suggestions on/off for this session (status bar toggle); the server is told too. */
  enabled = true;
  private readonly changed = new vscode.EventEmitter<void>();
  /** Fires after an accept or a reject (the status bar refreshes the gate's numbers). */
  readonly onDidResolve = this.changed.event;

  constructor(private readonly getClient: () => LanguageClient | undefined) {
    this.disposables.push(
      vscode.window.onDidChangeActiveTextEditor(() => this.reject('dismissed')),
      vscode.workspace.onDidCloseTextDocument((doc) => {
        if (this.current?.uri === doc.uri.toString()) {
          this.reject('dismissed');
        }
      }),
      vscode.window.onDidChangeTextEditorSelection((e) => {
        // A click elsewhere hides the ghost text without any request: that is a dismissal.
        if (e.kind === vscode.TextEditorSelectionChangeKind.Mouse && this.current) {
          this.reject('dismissed');
        }
      }),
    );
  }

  get pending(): string | undefined {
    return this.current?.id;
  }

  private notify(method: string, params: object): void {
    const client = this.getClient();
    if (!client || !client.isRunning()) {
      return;
    }
    // Fire-and-forget: a notification can't fail the editor, and an old server that does not
    // know the method just ignores it.
    client.sendNotification(method, params).catch(() => undefined);
  }

  reject(reason: RejectReason): void {
    const shown = this.current;
    if (!shown) {
      return;
    }
    this.current = undefined;
    this.notify('heedls/suggestionRejected', { id: shown.id, reason });
    this.changed.fire();
  }

  accepted(id: string): void {
    if (this.current?.id === id) {
      this.current = undefined;
    }
    this.changed.fire();
  }

  private markShown(doc: vscode.TextDocument, pos: vscode.Position, id: string, text: string): void {
    this.current = {
      id,
      uri: doc.uri.toString(),
      line: pos.line,
      character: pos.character,
      linePrefix: doc.lineAt(pos.line).text.slice(0, pos.character),
      text,
    };
    this.notify('heedls/suggestionShown', { id });
  }

  /** Is the shown suggestion's whole text now in the document where it was shown? */
  private wasInserted(doc: vscode.TextDocument): boolean {
    const shown = this.current;
    if (!shown || shown.uri !== doc.uri.toString() || shown.line >= doc.lineCount) {
      return false;
    }
    const start = new vscode.Position(shown.line, shown.character);
    const end = doc.positionAt(doc.offsetAt(start) + shown.text.length);
    return shown.text.length > 0 && doc.getText(new vscode.Range(start, end)) === shown.text;
  }

  /** Why the shown suggestion is being replaced by a request at `pos`. */
  private supersedeReason(doc: vscode.TextDocument, pos: vscode.Position): RejectReason {
    const shown = this.current;
    if (!shown || shown.uri !== doc.uri.toString() || shown.line !== pos.line || pos.character < shown.character) {
      return 'superseded';
    }
    const lineNow = doc.lineAt(pos.line).text;
    if (!lineNow.startsWith(shown.linePrefix)) {
      return 'typed-over';
    }
    const typed = lineNow.slice(shown.character, pos.character);
    // Typing through the ghost text keeps it; anything else overwrote it.
    return shown.text.startsWith(typed) ? 'superseded' : 'typed-over';
  }

  middleware(): Middleware {
    return {
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        if (this.current) {
          if (this.wasInserted(document)) {
            // Tab inserted it and its accept command is on its way: not a rejection.
            this.current = undefined;
          } else {
            this.reject(this.supersedeReason(document, position));
          }
        }
        if (!this.enabled) {
          return undefined;
        }
        let result: vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined;
        try {
          result = await next(document, position, context, token);
        } catch {
          // A slow, restarting or broken server must never surface as an editor error.
          return undefined;
        }
        const items = Array.isArray(result) ? result : (result?.items ?? []);
        const first = items.find((item) => item.command?.command === ACCEPT_COMMAND);
        if (first && !token.isCancellationRequested) {
          const id = first.command?.arguments?.[0];
          const version = document.version;
          const text = typeof first.insertText === 'string' ? first.insertText : first.insertText.value;
          // VS Code displays the first item once this promise resolves, unless the document moved
          // on meanwhile: report "shown" only then.
          setTimeout(() => {
            if (typeof id === 'string' && !token.isCancellationRequested && document.version === version) {
              this.markShown(document, position, id, text);
            }
          }, 0);
        }
        return result;
      },
      executeCommand: async (command, args, next) => {
        if (command === ACCEPT_COMMAND && typeof args[0] === 'string') {
          this.accepted(args[0]);
        }
        return next(command, args);
      },
    };
  }

  dispose(): void {
    for (const d of this.disposables) {
      d.dispose();
    }
    this.changed.dispose();
  }
}
