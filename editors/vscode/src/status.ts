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
    this.status = status;
    if (typeof status?.enabled === 'boolean') {
      this.enabled = status.enabled;
    }
    this.render();
  }

  /** "23% hidden", or undefined before the gate has decided anything. */
  static hiddenLabel(gate: GateStatus | undefined): string | undefined {
    if (!gate || typeof gate.hidden_share !== 'number' || !gate.requests) {
      return undefined;
    }
    return `${Math.round(gate.hidden_share * 100)}% hidden`;
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
    if (this.status?.provider) {
      md.appendMarkdown(`provider: \`${this.status.provider}\`\n\n`);
    }
    if (gate) {
      md.appendMarkdown(`gate: \`${gate.mode ?? '?'}\`${gate.model_version ? ` (model ${gate.model_version})` : ''}\n\n`);
      md.appendMarkdown(
        `requests ${gate.requests ?? 0} · skipped before asking ${gate.skipped ?? 0} · hidden ${gate.hidden ?? 0}` +
          (hidden ? ` (${hidden})` : ''),
      );
    }
    item.tooltip = md;
  }

  dispose(): void {
    this.item.dispose();
  }
}
