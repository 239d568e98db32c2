/**
 * `mirrorcap query [EXPR] [--out DIR] [--session NAME]... [--since T] [--until T] [--limit N] [-w FILE]`
 * over the local store, or `--from URL[,URL]...` across appliances: one pcap, in timestamp
 * order, to stdout or FILE. A summary (and on a terminal, progress) goes to stderr.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import type { Writable } from 'node:stream';
import { OPTIONS, parseFlags, resolveOption, type OptionSpec } from '../config.js';
import { FilterError } from '../filter/index.js';
import { buildIndex } from '../finish/index-build.js';
import type { QueryStats, Time } from '../query/file-source.js';
import { DEFAULT_FLOW_FORMAT, parseFlowFormat, type FlowFormat } from '../flowformat.js';
import type { FlowWindow } from '../query/flows.js';
import { formatFlowRecord, type FlowRecord } from '../session/flowrender.js';
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
  { name: 'flows', kind: 'bool', default: 'false', help: 'print flow records (VPC Flow Logs text) instead of packets (docs/flows.md)' },
  { name: 'json', kind: 'bool', default: 'false', help: 'with --flows: JSON lines, as /api/flows answers' },
  { ...OPTIONS.find((o) => o.name === 'node-name')!, help: "with --flows: the appliance's --node-name, which names its sessions' flow-log files (default: the host name)" },
];

/** What --help shows after an option, by its kind or name (T: a time). */
const VALUE_NAMES: Readonly<Record<string, string>> = { bool: '', count: 'N', out: 'DIR', 'http-token': 'TOKEN', 'node-name': 'NAME' };

export const QUERY_HELP = `Usage: mirrorcap query [EXPR] [--out DIR] [--session NAME]... [--since T] [--until T]
                       [--limit N] [-w FILE] [--from URL[,URL]]... [--http-token TOKEN]
       mirrorcap query --flows [EXPR] [--json] [same options]

Every stored record of the selected sessions (all by default) that matches the filter
expression EXPR (the tcpdump language) and lies in [--since, --until), from finished files
and the flushed part of open ones, as one pcap in timestamp order (ties: session name, then
file order), each record byte for byte as stored. Files are read through their index where
it can tell which records may match; a missing, stale or corrupt index means a scan of that
file (counted in the summary) and is rebuilt afterwards.
With --from, the appliances at those URLs answer (GET /api/query) and their answers are
merged; each one's result is reported on stderr.
With --flows, the flow records (VPC Flow Logs text, header line first; --json: JSON lines)
that overlap the window and whose flow EXPR matches, by start time, from the finished
flow-log files under DIR/flows or the appliances' /api/flows.
Exit status: 0 done, 1 some file or appliance could not be read (the rest was answered),
2 a bad command line.

Options:
  --session NAME                     a session to search (repeat or comma-separate; default all)
  -w FILE                            write the pcap to FILE (default stdout, never a terminal)
  --from URL[,URL]                   ask these appliances instead of the local store (repeatable)
${QUERY_OPTIONS.map((o) => `  --${`${o.name} ${VALUE_NAMES[o.kind === 'bool' || o.kind === 'count' ? o.kind : o.name] ?? 'T'}`.padEnd(33)}${o.help}${o.default === '' || o.kind === 'bool' ? '' : ` (default ${o.default})`}`).join('\n')}
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
  const [out, sinceText, untilText, limit, token, flows, json, nodeName] = QUERY_OPTIONS.map((o) => orUsageError(() => resolveOption(o, flags))) as [
    string,
    string | null,
    string | null,
    number,
    string | null,
    boolean,
    boolean,
    string | null,
  ];
  const since = timeOption('since', sinceText);
  const until = timeOption('until', untilText);
  const filter = positional.join(' ');
  if (!flows && (json || nodeName !== null)) usageError('--json and --node-name go with --flows');
  if (flows) {
    const seconds = (t: { time: Time } | null, missing: number): number => (t === null ? missing : t.time[0] + t.time[1] / 1e9);
    const window = { since: seconds(since, -Infinity), until: seconds(until, Infinity), sessions, filter, limit };
    return flowsQuery(window, { out, node: nodeName ?? hostname(), from, token, json, write });
  }
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

/** --flows: the records as VPC Flow Logs text (header line first) or JSON lines, to stdout or -w FILE. */
async function flowsQuery(
  window: FlowWindow,
  opts: { out: string; node: string; from: readonly string[]; token: string | null; json: boolean; write: string | null },
): Promise<number> {
  let records: FlowRecord[];
  let format: FlowFormat | null = null;
  let status = 0;
  try {
    if (opts.from.length > 0) {
      // Loaded only for --flows: it brings the HTTP client, which a pcap query loads only for --from.
      const { askFlows } = await import('../query/flows.js');
      const answer = await askFlows(opts.from, window, opts.token);
      records = answer.records;
      for (const r of answer.reports) {
        const note = r.complete ? '' : ' (incomplete: its ring had overwritten records of the window)';
        process.stderr.write(`mirrorcap query: ${r.url}: ${r.error === null ? `${r.records} flow records${note}` : `error: ${r.error}`}\n`);
        if (r.error !== null) status = 1;
      }
    } else {
      const { readFlowLogs } = await import('../query/flows.js');
      const answer = await readFlowLogs(opts.out, opts.node, window);
      records = answer.records;
      format = answer.format;
      process.stderr.write(`mirrorcap query: ${answer.files} flow-log files read, ${records.length} records\n`);
      for (const e of answer.errors) process.stderr.write(`mirrorcap query: ${e}\n`);
      if (answer.errors.length > 0) status = 1;
    }
  } catch (err) {
    if (err instanceof FilterError) usageError(err.message);
    throw err;
  }
  // Records from appliances carry no format: they print in the default one (version 2's fields).
  const text = format ?? parseFlowFormat(DEFAULT_FLOW_FORMAT);
  let body = opts.json ? '' : `${text.header}\n`;
  for (const r of records) body += opts.json ? `${JSON.stringify(r)}\n` : `${formatFlowRecord(text, r)}\n`;
  if (opts.write === null || opts.write === '-') await new Promise<void>((resolve, reject) => process.stdout.write(body, (err) => (err ? reject(err) : resolve())));
  else await writeFile(opts.write, body);
  return status;
}
