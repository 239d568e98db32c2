/**
 * Reading our Dockerfile, and replaying it where there is no Docker engine: each stage's
 * filesystem is a folder, COPY copies into it, RUN runs here with the stage's WORKDIR as
 * its working folder. Enough of Docker's rules for the instructions our Dockerfile uses
 * (exec-form JSON, `\` continuations, global ARGs in FROM, `--flag=value` options,
 * BuildKit's empty-wildcard COPY), not a general implementation.
 */
import { spawn } from 'node:child_process';
import { cp, mkdir, readdir, stat } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY, ... */
  readonly op: string;
  /** Leading `--name=value` options (COPY --from, HEALTHCHECK --interval, ...). */
  readonly flags: Readonly<Record<string, string>>;
  /** The rest, continuations joined. */
  readonly args: string;
}

export interface Stage {
  readonly image: string;
  readonly name: string | null;
  readonly steps: readonly Instruction[];
}

export function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line)) continue; // comments (and parser directives); also inside continuations
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const whole = (pending + line.trim()).trim();
    pending = '';
    if (whole !== '') logical.push(whole);
  }
  const globalArgs = new Map<string, string>();
  const stages: Array<{ image: string; name: string | null; steps: Instruction[] }> = [];
  for (const l of logical) {
    const [, word, rest0] = /^(\S+)\s*(.*)$/.exec(l)!;
    const op = word!.toUpperCase();
    let rest = rest0!;
    const flags: Record<string, string> = {};
    let m: RegExpExecArray | null;
    while ((m = /^--([\w-]+)=(\S+)\s*/.exec(rest)) !== null) {
      flags[m[1]!] = m[2]!;
      rest = rest.slice(m[0].length);
    }
    if (op === 'ARG' && stages.length === 0) {
      const [k, v = ''] = rest.split('=');
      globalArgs.set(k!, v);
    } else if (op === 'FROM') {
      const [image, as, name] = rest.split(/\s+/);
      const resolved = image!.replace(/\$\{?(\w+)\}?/g, (_, k: string) => globalArgs.get(k) ?? '');
      stages.push({ image: resolved, name: as?.toUpperCase() === 'AS' ? name! : null, steps: [] });
    } else {
      if (stages.length === 0) throw new Error(`${op} before FROM`);
      stages.at(-1)!.steps.push({ op, flags, args: rest });
    }
  }
  return stages;
}

/** The arguments of an exec-form instruction (`["a", "b"]`), or the shell form wrapped in sh -c. */
export function execForm(args: string): string[] {
  return args.startsWith('[') ? (JSON.parse(args) as string[]) : ['/bin/sh', '-c', args];
}

export function all(stage: Stage, op: string): Instruction[] {
  return stage.steps.filter((s) => s.op === op);
}

/** The WORKDIR in force after the last step of the stage (relative ones build on the previous). */
export function workdir(stage: Stage, upTo = stage.steps.length): string {
  let dir = '/';
  for (const s of stage.steps.slice(0, upTo)) if (s.op === 'WORKDIR') dir = posix.resolve(dir, s.args);
  return dir;
}

/** The `KEY=value` pairs of one ENV instruction. */
function envPairs(args: string): Array<[string, string]> {
  return (args.match(/\w+=("[^"]*"|\S+)/g) ?? []).map((kv) => {
    const i = kv.indexOf('=');
    return [kv.slice(0, i), kv.slice(i + 1).replace(/^"|"$/g, '')];
  });
}

export function envOf(stage: Stage): Record<string, string> {
  return Object.fromEntries(all(stage, 'ENV').flatMap((s) => envPairs(s.args)));
}

/** The packages an `apt-get install` RUN step installs. */
export function aptPackages(stage: Stage): string[] {
  return all(stage, 'RUN').flatMap((s) => {
    const m = /apt-get install ((?:-\S+\s+)*)([^&|;]+)/.exec(s.args);
    return m ? m[2]!.trim().split(/\s+/) : [];
  });
}

/**
 * A .dockerignore as Docker reads it: patterns against the path from the context root, `*`
 * and `?` within one segment, `**` across segments, a match on a folder covers what is in
 * it, `!` re-includes, the last matching line wins.
 */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, ''));
      const re = pattern
        .split('/')
        .map((seg) => (seg === '**' ? '.*' : seg.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')))
        .join('/')
        .replace(/\.\*\//g, '(?:.*/)?');
      return { negate, re: new RegExp(`^${re}(?:/.*)?$`) };
    });
  return (path) => {
    let ignored = false;
    for (const r of rules) if (r.re.test(path)) ignored = !r.negate;
    return ignored;
  };
}

export interface StepRun {
  readonly command: string;
  readonly ms: number;
}

export interface ReplayOptions {
  /** Folder standing for this stage's `/`. */
  readonly root: string;
  /** The build context (what .dockerignore let through). */
  readonly context: string;
  /** Roots of the earlier stages, by name, for COPY --from. */
  readonly stages: ReadonlyMap<string, string>;
  /** The environment RUN steps start from (the stage's ENV is laid over it). */
  readonly env: NodeJS.ProcessEnv;
  /** Which RUN steps to execute here; the others (apt-get, users) are only read. */
  readonly runs: (command: string) => boolean;
  /** Rewrites an ENV value that names a path of the base image into this machine's equivalent. */
  readonly mapEnv: (key: string, value: string) => string | undefined;
}

/** Replays one stage's WORKDIR, COPY and RUN steps into `opts.root`; returns the RUN steps it executed. */
export async function replayStage(stage: Stage, opts: ReplayOptions): Promise<StepRun[]> {
  const ran: StepRun[] = [];
  const inRoot = (p: string): string => join(opts.root, p);
  const env: NodeJS.ProcessEnv = { ...opts.env };
  for (let i = 0; i < stage.steps.length; i++) {
    const s = stage.steps[i]!;
    const cwd = workdir(stage, i);
    if (s.op === 'WORKDIR' || s.op === 'VOLUME') {
      await mkdir(inRoot(s.op === 'WORKDIR' ? workdir(stage, i + 1) : s.args), { recursive: true });
    } else if (s.op === 'ENV') {
      for (const [k, v] of envPairs(s.args)) {
        const mapped = opts.mapEnv(k, v);
        if (mapped === undefined) delete env[k];
        else env[k] = mapped;
      }
    } else if (s.op === 'COPY') {
      const from = s.flags.from;
      const srcRoot = from === undefined ? opts.context : opts.stages.get(from);
      if (srcRoot === undefined) throw new Error(`COPY --from=${from}: no such stage`);
      const words = s.args.startsWith('[') ? (JSON.parse(s.args) as string[]) : s.args.split(/\s+/);
      const dest = posix.resolve(cwd, words.at(-1)!);
      const sources = words.slice(0, -1);
      const intoDir = words.at(-1)!.endsWith('/') || sources.length > 1 || sources.some((x) => /[*?[]/.test(x));
      for (const src of sources) {
        for (const path of await expand(srcRoot, posix.resolve('/', src))) {
          const isDir = (await stat(path)).isDirectory();
          const target = isDir ? inRoot(dest) : intoDir ? join(inRoot(dest), basename(path)) : inRoot(dest);
          await cp(path, target, { recursive: true, verbatimSymlinks: true });
        }
      }
    } else if (s.op === 'RUN' && opts.runs(s.args)) {
      const started = Date.now();
      await sh(s.args, inRoot(cwd), env);
      ran.push({ command: s.args, ms: Date.now() - started });
    }
  }
  return ran;
}

/** A COPY source under `root`: a path, or a wildcard in its last segment (no match is fine, a missing folder is not). */
async function expand(root: string, src: string): Promise<string[]> {
  const dir = posix.dirname(src);
  const last = posix.basename(src);
  if (!/[*?[]/.test(last)) return [join(root, src)];
  const re = new RegExp(`^${last.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return (await readdir(join(root, dir))).filter((n) => re.test(n)).map((n) => join(root, dir, n));
}

function sh(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`RUN ${command} exited ${code}:\n${output.slice(-4000)}`))));
  });
}
