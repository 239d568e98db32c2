/** What every command shares: the version, and how a bad command line ends. */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config.js';

export const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** Exit status 2 with one line: a bad command line, configuration or environment. */
export function usageError(message: string): never {
  process.stderr.write(`mirrorcap: ${message}\n`);
  process.exit(2);
}

/** Runs `fn`; a ConfigError it throws becomes usageError. */
export function orUsageError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ConfigError) usageError(err.message);
    throw err;
  }
}
