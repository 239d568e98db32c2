/** What every command shares: the version, and how a bad command line ends. */
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ConfigError, parseFlags, type OptionSpec, type Raw } from '../config.js';

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

/** For commands that take nothing (interfaces, version): any option or argument exits 2. */
export function noArguments(command: string, argv: readonly string[]): void {
  const { positional } = orUsageError(() => parseFlags(argv, [], `mirrorcap ${command}`));
  if (positional.length > 0) usageError(`${command} takes no arguments, got "${positional[0]}" (see mirrorcap help ${command})`);
}

/** Flags and the one capture file a tool command (decap, replay) takes; usage errors exit 2. */
export async function toolArguments(argv: readonly string[], table: readonly OptionSpec[], command: string): Promise<{ flags: Map<string, Raw>; path: string }> {
  const { flags, positional } = orUsageError(() => parseFlags(argv, table, `mirrorcap ${command}`));
  if (positional.length !== 1) usageError(`${command} takes one capture file, got ${positional.length} (see mirrorcap ${command} --help)`);
  const path = positional[0]!;
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => usageError(`cannot read ${path}: ${err.code ?? err.message}`));
  if (!st.isFile()) usageError(`${path} is not a file`);
  return { flags, path };
}
