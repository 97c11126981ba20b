// Status-bar item: is heedls on, is the server up, and how much the acceptance gate hides.
// Click toggles suggestions (command heedls.toggle). Numbers come from the `heedls/status` request.
import * as vscode from 'vscode';

export interface GateStatus {
  mode?: string;
  model_version?: string | null;
  requests?: number;
  skipped?: number;
  hidden?: number;
  hidden_share?: number | null;
}

export interface ServerStatus {
  enabled?: boolean;
  provider?: string;
  gate?: GateStatus;
}

export type ServerState = 'starting' | 'running' | 'stopped' | 'missing';

export class StatusItem implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private state: ServerState = 'starting';
  private status: ServerStatus | undefined;
  private enabled = true;

  constructor() {
    this.item = vscode.window.createStatusBarItem('heedls.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'heedls';
    this.render();
    this.item.show();
  }

  setState(state: ServerState): void {
    this.state = state;
    this.render();
  }

  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.render();
  }

  setStatus(status: ServerStatus | undefined): void {
    // Whatever the server answered: only an object is a status (a string, a number, an array is not).
    this.status = status && typeof status === 'object' && !Array.isArray(status) ? status : undefined;
    status = this.status;
    if (typeof status?.enabled === 'boolean') {
      this.enabled = status.enabled;
    }
    this.render();
  }

  /** "23% hidden", or undefined before the gate has decided anything. */
  static hiddenLabel(gate: GateStatus | undefined): string | undefined {
    // A share is a finite number from 0 to 1 and needs requests to be a share of: a server that
    // sends anything else (NaN, -3.5, 1e308, a string) gets the plain item, not "-350% hidden".
    const share = gate?.hidden_share;
    const requests = StatusItem.count(gate?.requests);
    if (typeof share !== 'number' || !Number.isFinite(share) || share < 0 || share > 1 || !requests) {
      return undefined;
    }
    return `${Math.round(share * 100)}% hidden`;
  }

  /** A count from the server: a non-negative safe integer, else undefined. */
  static count(value: unknown): number | undefined {
    return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  }

  /** A name from the server, safe inside Markdown inline code: no backticks, no line breaks, short. */
  static name(value: unknown): string | undefined {
    if (typeof value !== 'string' && typeof value !== 'number') {
      return undefined;
    }
    const text = String(value).replace(/[`\r\n]/g, '').trim();
    return text ? (text.length > 60 ? `${text.slice(0, 57)}...` : text) : undefined;
  }

  private render(): void {
    const item = this.item;
    item.backgroundColor = undefined;
    if (this.state === 'missing') {
      item.text = '$(warning) heedls';
      item.tooltip = 'heedls is not installed or could not be found. Click for details.';
      item.command = 'heedls.showOutput';
      item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
      return;
    }
    if (this.state === 'stopped') {
      item.text = '$(error) heedls';
      item.tooltip = 'The heedls server is not running. Click to restart.';
      item.command = 'heedls.restartServer';
      item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
      return;
    }
    if (this.state === 'starting') {
      item.text = '$(loading~spin) heedls';
      item.tooltip = 'Starting the heedls server…';
      item.command = 'heedls.showOutput';
      return;
    }
    const hidden = StatusItem.hiddenLabel(this.status?.gate);
    item.text = this.enabled ? `$(sparkle) heedls${hidden ? ` · ${hidden}` : ''}` : '$(circle-slash) heedls off';
    item.command = 'heedls.toggle';
    const gate = this.status?.gate;
    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown(`**heedls** — inline suggestions ${this.enabled ? 'on' : 'off'} (click to toggle)\n\n`);
    const provider = StatusItem.name(this.status?.provider);
    if (provider) {
      md.appendMarkdown(`provider: \`${provider}\`\n\n`);
    }
    if (gate && typeof gate === 'object') {
      const model = StatusItem.name(gate.model_version);
      md.appendMarkdown(`gate: \`${StatusItem.name(gate.mode) ?? '?'}\`${model ? ` (model \`${model}\`)` : ''}\n\n`);
      const n = (v: unknown) => (v === undefined || v === null ? '0' : String(StatusItem.count(v) ?? '?'));
      md.appendMarkdown(
        `requests ${n(gate.requests)} · skipped before asking ${n(gate.skipped)} · hidden ${n(gate.hidden)}` +
          (hidden ? ` (${hidden})` : ''),
      );
    }
    item.tooltip = md;
  }

  dispose(): void {
    this.item.dispose();
  }
}
