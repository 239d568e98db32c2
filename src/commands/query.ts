/**
 * `mirrorcap query [EXPR] [--out DIR] [--session NAME]... [--since T] [--until T] [--limit N] [-w FILE]`
 * over the local store, or `--from URL[,URL]...` across appliances: one pcap, in timestamp
 * order, to stdout or FILE. A summary (and on a terminal, progress) goes to stderr.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { OPTIONS, parseFlags, resolveOption, type OptionSpec } from '../config.js';
import { FilterError } from '../filter/index.js';
import { buildIndex } from '../finish/index-build.js';
import type { QueryStats, Time } from '../query/file-source.js';
import { QueryError, runQuery } from '../query/query.js';
import { parseTime } from '../query/time.js';
import { orUsageError, usageError } from './common.js';

const OUT: OptionSpec = { ...OPTIONS.find((o) => o.name === 'out')!, help: 'output folder of the appliance (one subfolder per session)' };
const QUERY_OPTIONS: readonly OptionSpec[] = [
  OUT,
  { name: 'since', kind: 'text', default: '', help: 'first time: RFC 3339, Unix seconds, or a duration back from now (15m, 2h)' },
  { name: 'until', kind: 'text', default: '', help: 'end time (records before it), same forms' },
  { name: 'limit', kind: 'count', default: '0', help: 'at most this many records (0 = all)' },
  { name: 'http-token', kind: 'text', default: '', help: 'bearer token of the appliances asked with --from' },
];

export const QUERY_HELP = `Usage: mirrorcap query [EXPR] [--out DIR] [--session NAME]... [--since T] [--until T]
                       [--limit N] [-w FILE] [--from URL[,URL]]... [--http-token TOKEN]

Every stored record of the selected sessions (all by default) that matches the filter
expression EXPR (the tcpdump language) and lies in [--since, --until), from finished files
and the flushed part of open ones, as one pcap in timestamp order (ties: session name, then
file order), each record byte for byte as stored. Files are read through their index where
it can tell which records may match; a missing, stale or corrupt index means a scan of that
file (counted in the summary) and is rebuilt afterwards.
With --from, the appliances at those URLs answer (GET /api/query) and their answers are
merged; each one's result is reported on stderr.
Exit status: 0 done, 1 some file or appliance could not be read (the rest was answered),
2 a bad command line.

Options:
  --session NAME                     a session to search (repeat or comma-separate; default all)
  -w FILE                            write the pcap to FILE (default stdout, never a terminal)
  --from URL[,URL]                   ask these appliances instead of the local store (repeatable)
${QUERY_OPTIONS.map((o) => `  --${`${o.name} ${o.kind === 'count' ? 'N' : o.name === 'out' ? 'DIR' : o.name === 'http-token' ? 'TOKEN' : 'T'}`.padEnd(33)}${o.help}${o.default === '' ? '' : ` (default ${o.default})`}`).join('\n')}
`;

/** Takes the repeatable options (--session, --from) and -w out of argv. */
function takeRepeated(argv: readonly string[]): { rest: string[]; sessions: string[]; from: string[]; write: string | null } {
  const rest: string[] = [];
  const sessions: string[] = [];
  const from: string[] = [];
  let write: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^(--session|--from|-w)(?:=(.*))?$/.exec(a);
    if (m === null) {
      rest.push(a);
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined || value === '') usageError(`option ${m[1]} needs a value`);
    if (m[1] === '-w') write = value;
    else (m[1] === '--session' ? sessions : from).push(...value.split(',').filter((v) => v !== ''));
  }
  return { rest, sessions, from, write };
}

function timeOption(name: string, value: unknown): { text: string; time: Time } | null {
  if (value === null) return null;
  const time = parseTime(value as string);
  if (time === null) usageError(`invalid --${name} "${String(value)}": expected RFC 3339 (2026-11-30T14:02:00Z), Unix seconds, or a duration back from now (15m, 2h)`);
  return { text: value as string, time };
}

export async function queryCommand(argv: string[]): Promise<number> {
  const { rest, sessions, from, write } = takeRepeated(argv);
  const { flags, positional } = orUsageError(() => parseFlags(rest, QUERY_OPTIONS, 'mirrorcap query'));
  const [out, sinceText, untilText, limit, token] = QUERY_OPTIONS.map((o) => orUsageError(() => resolveOption(o, flags))) as [string, string | null, string | null, number, string | null];
  const since = timeOption('since', sinceText);
  const until = timeOption('until', untilText);
  const filter = positional.join(' ');
  if (write === null && process.stdout.isTTY) usageError('the answer is a pcap: redirect stdout or give -w FILE');
  const dest: Writable = write === null || write === '-' ? process.stdout : createWriteStream(write);
  const sink = (chunk: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      dest.write(chunk, (err) => (err ? reject(err) : resolve()));
    });
  let status = 0;
  try {
    if (from.length > 0) {
      // Loaded only for --from: a local query does not need the HTTP client.
      const { queryAppliances } = await import('../query/remote.js');
      const reports = await queryAppliances(from, { filter, since: since?.text ?? null, until: until?.text ?? null, sessions, limit }, token, sink);
      for (const r of reports) {
        process.stderr.write(`mirrorcap query: ${r.url}: ${r.error === null ? `${r.records} records` : `error: ${r.error}${r.records > 0 ? ` (after ${r.records} records, merged)` : ''}`}\n`);
        if (r.error !== null) status = 1;
      }
    } else {
      const bad: string[] = [];
      const progress = process.stderr.isTTY
        ? (s: QueryStats, total: number): void => void process.stderr.write(`\rmirrorcap query: ${s.files}/${total} files examined, ${(s.bytesRead / 2 ** 20).toFixed(1)} MiB read `)
        : undefined;
      const stats = await runQuery(
        { out, sessions, filter, since: since?.time ?? null, until: until?.time ?? null, limit },
        sink,
        { progress, badIndex: (path) => bad.push(path), syncReads: true },
      );
      if (progress !== undefined) process.stderr.write('\n');
      const scanned = Object.entries(stats.scanned).filter(([, n]) => n > 0);
      process.stderr.write(
        `mirrorcap query: ${stats.files} files: ${stats.indexed} through their index (${stats.skipped} of them skipped whole), ` +
          `${scanned.reduce((n, [, v]) => n + v, 0)} scanned${scanned.length > 0 ? ` (${scanned.map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}; ${stats.bytesRead} bytes read\n`,
      );
      for (const e of stats.errors) process.stderr.write(`mirrorcap query: ${e}\n`);
      if (stats.errors.length > 0) status = 1;
      let rebuilt = 0;
      for (const path of bad) if ((await buildIndex(path).catch(() => null)) !== null) rebuilt++;
      if (rebuilt > 0) process.stderr.write(`mirrorcap query: rebuilt ${rebuilt} index${rebuilt === 1 ? '' : 'es'}\n`);
    }
  } catch (err) {
    if (err instanceof QueryError || err instanceof FilterError) usageError(err.message);
    throw err;
  } finally {
    if (dest !== process.stdout) await new Promise<void>((resolve) => (dest as WriteStream).end(resolve));
  }
  return status;
}
