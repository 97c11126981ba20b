// The server's stderr in the output channel, each line at the level the server logged it.
//
// heedls logs with Python's logging as `2026-12-03 13:00:00,123 WARNING heedls.server.config: …`.
// languageclient files every stderr line as an error, so a warning about a setting read as
// `[error]` beside the same warning sent as window/logMessage at its own level.
import * as readline from 'node:readline';
import type { Readable } from 'node:stream';
import type { LogOutputChannel } from 'vscode';

export type Level = 'info' | 'warn' | 'error';

const RECORD = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) /;
// DEBUG records go in as info: the server already filters by `heedls.logLevel`, and the channel's
// own level (Info unless the user changes it) would drop the debug lines the user asked for.
const LEVELS: Record<string, Level> = {
  DEBUG: 'info', INFO: 'info', WARNING: 'warn', ERROR: 'error', CRITICAL: 'error',
};

/** The level of a stderr line: a logging record's own; a line of no record (a traceback's, a
 * message's second line) the record's before it; anything before the first record an error. */
export function levelOf(line: string, previous: Level): Level {
  const match = RECORD.exec(line);
  return match ? LEVELS[match[1]] : previous;
}

function eachLine(input: Readable, handle: (line: string) => void): void {
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 }).on('line', handle);
}

export function pipeServerLog(input: Readable, channel: LogOutputChannel): void {
  let level: Level = 'error';
  eachLine(input, (line) => {
    level = levelOf(line, level);
    channel[level](line);
  });
}

/** What languageclient does with a server's stdout when it is not the protocol's channel. */
export function pipeLines(input: Readable, channel: LogOutputChannel): void {
  eachLine(input, (line) => channel.info(line));
}
