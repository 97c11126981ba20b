// Tells the server what happened to each inline suggestion, so the acceptance gate learns:
//   shown      - the first heedls item of a response that VS Code could display
//   accepted   - VS Code runs the item's own command `heedls.accept(id)` (nothing to do here
//                beyond forgetting the item)
//   rejected   - `dismissed`: Esc, a click or a keyboard move of the cursor (arrows, Home/End,
//                PgUp/PgDn) with no edit, another editor, the window losing focus;
//                `typed-over`: an edit that does not follow the suggestion (other text, Backspace,
//                Enter); `superseded`: a new suggestion (another id, or none) answered a request
//                made while the user was typing through the shown one.
// Typing through the ghost text (or VS Code's "accept word") is not a rejection: the request goes
// to the server, which answers with the same id and the rest, and Tab later accepts that one event.
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
  /** Document version when shown. */
  version: number;
  /** Document version last seen (when shown, or at the last selection event). */
  seenVersion: number;
  /** Where the cursor was last seen (when shown, or at the last selection event). */
  cursor: vscode.Position;
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
      vscode.window.onDidChangeTextEditorSelection((e) => this.selectionChanged(e)),
      // VS Code hides inline suggestions when the editor loses focus (editor.inlineSuggest has no
      // keepOnBlur by default); the window losing focus is the part of that the API reports.
      vscode.window.onDidChangeWindowState((state) => {
        if (!state.focused) {
          this.reject('dismissed');
        }
      }),
    );
  }

  /** A click, or a keyboard move not explained by an edit (arrows, Home/End, PgUp/PgDn), hides the
   * ghost text without any request: that is a dismissal. Typing moves the cursor too, but its
   * document change arrives first (a new version): the next request decides about those. */
  private selectionChanged(e: vscode.TextEditorSelectionChangeEvent): void {
    const shown = this.current;
    const doc = e.textEditor.document;
    if (!shown || shown.uri !== doc.uri.toString()) {
      return;
    }
    const sel = e.selections[0];
    const edited = doc.version !== shown.seenVersion;
    const moved = !sel || e.selections.length !== 1 || !sel.isEmpty || !sel.active.isEqual(shown.cursor);
    shown.seenVersion = doc.version;
    shown.cursor = sel?.active ?? shown.cursor;
    const Kind = vscode.TextEditorSelectionChangeKind;
    if (e.kind === Kind.Mouse || (!edited && moved && (e.kind === Kind.Keyboard || e.kind === Kind.Command))) {
      this.reject('dismissed');
    }
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
    const again = this.current?.id === id; // typing through: the same suggestion, its rest
    this.current = {
      id,
      uri: doc.uri.toString(),
      line: pos.line,
      character: pos.character,
      linePrefix: doc.lineAt(pos.line).text.slice(0, pos.character),
      text,
      version: doc.version,
      seenVersion: doc.version,
      cursor: pos,
    };
    if (!again) {
      this.notify('heedls/suggestionShown', { id });
    }
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

  /** Is a request at `pos` the user typing through the shown suggestion: same document and line,
   * the text before it unchanged, and what was typed since (maybe nothing) a prefix of it? */
  private typingThrough(doc: vscode.TextDocument, pos: vscode.Position): boolean {
    const shown = this.current;
    if (!shown || shown.uri !== doc.uri.toString() || shown.line !== pos.line || pos.character < shown.character) {
      return false;
    }
    const lineNow = doc.lineAt(pos.line).text;
    return lineNow.startsWith(shown.linePrefix) && shown.text.startsWith(lineNow.slice(shown.character, pos.character));
  }

  /** Why the shown suggestion is gone at a request at `pos` that is not typing through it. */
  private replaceReason(doc: vscode.TextDocument): RejectReason {
    const shown = this.current;
    if (shown && shown.uri === doc.uri.toString() && shown.version === doc.version) {
      return 'dismissed'; // the cursor moved away with no edit
    }
    // An edit that does not follow the suggestion: other text, Backspace, Enter (as in Neovim).
    return 'typed-over';
  }

  middleware(): Middleware {
    return {
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        // While the user types through the shown suggestion it stays undecided: the server answers
        // with the same id and the rest (its typing-through reuse), and only an answer with another
        // id, or none, supersedes it.
        let through: Shown | undefined;
        if (this.current) {
          if (this.wasInserted(document)) {
            // Tab inserted it and its accept command is on its way: not a rejection.
            this.current = undefined;
          } else if (this.typingThrough(document, position)) {
            through = this.current;
          } else {
            this.reject(this.replaceReason(document));
          }
        }
        const supersede = () => {
          if (through && this.current === through) {
            this.reject('superseded');
          }
        };
        if (!this.enabled) {
          supersede();
          return undefined;
        }
        let result: vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined;
        try {
          result = await next(document, position, context, token);
        } catch {
          // A slow, restarting or broken server must never surface as an editor error.
          if (!token.isCancellationRequested) {
            supersede();
          }
          return undefined;
        }
        if (token.isCancellationRequested) {
          return result; // a newer request follows: it decides about the shown suggestion
        }
        const items = Array.isArray(result) ? result : (result?.items ?? []);
        const first = items.find((item) => item.command?.command === ACCEPT_COMMAND);
        const id = first?.command?.arguments?.[0];
        if (typeof id !== 'string' || id !== through?.id) {
          supersede();
        }
        if (first && typeof id === 'string') {
          const version = document.version;
          const text = typeof first.insertText === 'string' ? first.insertText : first.insertText.value;
          // VS Code displays the first item once this promise resolves, unless the document moved
          // on meanwhile: report "shown" only then (the same id again is the same suggestion).
          setTimeout(() => {
            if (!token.isCancellationRequested && document.version === version) {
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
