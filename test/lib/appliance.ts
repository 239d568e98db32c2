/** Running the built CLI as its own process, as a user would, and talking to it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

export interface LogLine {
  readonly event?: string;
  readonly level: string;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export interface Appliance {
  readonly proc: ChildProcess;
  readonly udpPort: number;
  readonly httpPort: number;
  readonly logs: LogLine[];
  readonly stderr: () => string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Starts `mirrorcap run` on free loopback ports; resolves once it logged its start. */
export async function startAppliance(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 10_000, main = MAIN): Promise<Appliance> {
  return launchAppliance([process.execPath, main, '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', ...args], { env: { ...process.env, ...env } }, timeoutMs);
}

/** Starts mirrorcap as `argv` says (program first), e.g. as an image's ENTRYPOINT and CMD; resolves once it logged its start. */
export async function launchAppliance(argv: readonly string[], options: { env: NodeJS.ProcessEnv; cwd?: string }, timeoutMs = 10_000): Promise<Appliance> {
  const proc = spawn(argv[0]!, argv.slice(1), { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // 'close', not 'exit': the last log lines may still be in the pipe when the process exits.
  const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
  const started = new Promise<LogLine>((resolve, reject) => {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const parsed = JSON.parse(line) as LogLine;
          logs.push(parsed);
          if (parsed.event === 'start') resolve(parsed);
        } catch {
          reject(new Error(`non-JSON line on stdout: ${line}`));
        }
      }
    });
    void exited.then((code) => reject(new Error(`mirrorcap exited (${code}) before starting: ${err}`)));
    setTimeout(() => reject(new Error(`mirrorcap did not start within ${timeoutMs} ms: ${err}`)), timeoutMs).unref();
  });
  const start = await started;
  return {
    proc,
    udpPort: start.udpPort as number,
    httpPort: start.httpPort as number,
    logs,
    stderr: () => err,
    exited,
    stop: async (signal = 'SIGTERM') => {
      proc.kill(signal);
      return exited;
    },
  };
}

/**
 * Sends datagrams one after another, pacing by waiting for each send's callback and a
 * short pause every `burst`, so loopback does not overflow the receiver's socket buffer.
 */
export async function sendDatagrams(port: number, datagrams: readonly Buffer[], host = '127.0.0.1', burst = 64): Promise<void> {
  const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  try {
    for (let i = 0; i < datagrams.length; i++) {
      await new Promise<void>((resolve, reject) => sock.send(datagrams[i]!, port, host, (e) => (e ? reject(e) : resolve())));
      if (i % burst === burst - 1) await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    sock.close();
  }
}

export function httpGet(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${path} timed out`)));
    req.end();
  });
}

/** Polls until `check` returns true or the time is up. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** One sample value of a Prometheus text exposition, e.g. metric('mirrorcap_packets_total', {session: 'a'}). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const kv of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have.set(kv[1]!, kv[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

/** The sum of a metric over every series whose labels include `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (m && m[1] === name && Object.entries(labels).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) total += Number(m[3]);
  }
  return total;
}

/**
 * Ends the processes whose ids a test's script wrote to `file`, one per line, that descend
 * from this process (a command under /bin/sh -c is a grandchild). A descendant we have not
 * reaped keeps its id, so an id that has since gone to someone else's process is never signalled.
 */
export async function killOwnDescendants(file: string): Promise<void> {
  const parentOf = async (pid: number): Promise<number> => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
    return stat === '' ? 0 : Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  };
  for (const line of (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean)) {
    const pid = Number(line);
    let up = await parentOf(pid);
    while (up > 1 && up !== process.pid) up = await parentOf(up);
    if (up === process.pid) process.kill(pid, 'SIGKILL');
  }
}
