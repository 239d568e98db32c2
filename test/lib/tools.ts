/**
 * Running the external tools the tests use as oracles (tshark, capinfos, editcap, mergecap,
 * promtool, ...): one runner for all of them, asynchronous so that a slow tool does not stall
 * the event loop of a test that is also talking to an appliance.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Written to the tool's standard input (which is closed either way, so no tool waits on it). */
  input?: string;
}

/**
 * Runs a tool and resolves with its exit code and output; a non-zero exit does not reject
 * (tests look at the code). Rejects when the tool cannot run at all or dies by a signal.
 */
export function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { cwd: options.cwd, maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(err);
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
    // A tool that exits without reading its input breaks the pipe: its exit code tells the story.
    child.stdin?.on('error', () => {});
    child.stdin?.end(options.input);
  });
}

/** Runs a tool that must succeed; resolves with its standard output. */
export async function tool(cmd: string, args: readonly string[], options?: RunOptions): Promise<string> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Whether an executable called `name` is on PATH (synchronous: test options are decided before the tests run). */
export function haveTool(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return statSync(path).isFile();
    } catch {
      return false;
    }
  });
}

/** Runs `fn` with a fresh temporary directory, removed afterwards whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs async jobs with at most `limit` in flight, keeping the order of results. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
