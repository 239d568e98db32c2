/**
 * `mirrorcap query --flows`: the flow records of a time window, from the flow-log files on disk
 * or from appliances' GET /api/flows, merged by start time (ties: the file or appliance read
 * first), selected by session and by a pcap-filter expression as /api/flows selects them
 * (flow-filter.ts).
 *
 *   <out>/flows/AWSLogs/…/*.log.gz ──gunzip, header──▶ records ─┐
 *                                                               ├─▶ window, session, EXPR ──▶ by start ──▶ text or JSON lines
 *   --from a,b ──GET /api/flows?since&until&filter&session──────┘   (an appliance that fails is reported, the rest merged)
 *
 * On disk are the intervals already written (finished files, recovered ones included); the open
 * interval is in the appliance's memory until it ends, and neither source has it before then.
 * A file is named by its flow log id, not its session: the ids of the sessions are computed from
 * the node name (flowlog.ts flowLogId) for the session folders in <out> and the sessions asked for.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { flowLogId, parseFlowLogName } from '../capture/flowlog.js';
import { FLOWS_FOLDER, isValidSessionName } from '../config.js';
import { parseFlowFormat, type FlowFormat } from '../flowformat.js';
import { inFlowWindow, parseFlowRecord, type FlowRecord } from '../session/flowrender.js';
import { flowMatcher } from './flow-filter.js';
import { askAppliance } from './remote.js';

const gunzipAsync = promisify(gunzip);

export interface FlowWindow {
  /** Unix seconds; -Infinity / Infinity for no bound. A record is in it when it overlaps it. */
  readonly since: number;
  readonly until: number;
  /** Empty: every session. */
  readonly sessions: readonly string[];
  /** A pcap-filter expression; '' for all records. */
  readonly filter: string;
  /** Most records to answer (the earliest); 0 = all. */
  readonly limit: number;
}

export interface FlowAnswer {
  /** By start time. */
  readonly records: FlowRecord[];
  /** The format of the first file read (the text output's), null when none was. */
  readonly format: FlowFormat | null;
  readonly files: number;
  /** Files or lines that could not be read (the rest was answered). */
  readonly errors: string[];
}

/** The records of the window in the flow-log files under `<out>/flows` (node: the appliance's --node-name). Throws FilterError. */
export async function readFlowLogs(out: string, node: string, req: FlowWindow): Promise<FlowAnswer> {
  const match = flowMatcher(req.filter);
  const sessionOf = new Map<string, string>();
  const folders = await readdir(out, { withFileTypes: true }).catch(() => []);
  for (const name of [...folders.filter((d) => d.isDirectory()).map((d) => d.name).filter(isValidSessionName), ...req.sessions]) sessionOf.set(flowLogId(node, name), name);
  const wanted = new Set(req.sessions.map((s) => flowLogId(node, s)));
  const root = join(out, FLOWS_FOLDER);
  const names = await readdir(root, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const records: FlowRecord[] = [];
  const errors: string[] = [];
  let format: FlowFormat | null = null;
  let files = 0;
  for (const rel of names.sort()) {
    const parsed = parseFlowLogName(basename(rel));
    // A file's records start in its interval, which starts at the time in its name.
    if (parsed === null || parsed.start > req.until || (wanted.size > 0 && !wanted.has(parsed.id))) continue;
    const path = join(root, rel);
    files++;
    let lines: string[];
    let fileFormat: FlowFormat;
    try {
      lines = (await gunzipAsync(await readFile(path))).toString('utf8').split('\n');
      fileFormat = parseFlowFormat(lines[0]!.split(' ').map((f) => `\${${f}}`).join(' '));
    } catch (err) {
      errors.push(`${path}: ${(err as Error).message}`);
      continue;
    }
    format ??= fileFormat;
    const session = sessionOf.get(parsed.id) ?? parsed.id;
    let bad = 0;
    for (let i = 1; i < lines.length; i++) {
      if (lines[i] === '') continue;
      const values = lines[i]!.split(' ');
      if (values.length !== fileFormat.fields.length) {
        bad++;
        continue;
      }
      const r = parseFlowRecord(session, fileFormat.fields, values);
      if (inFlowWindow(r, req.since, req.until) && (match === null || match(r))) records.push(r);
    }
    if (bad > 0) errors.push(`${path}: ${bad} line(s) without the header's ${fileFormat.fields.length} fields, left out`);
  }
  return { records: byStart(records, req.limit), format, files, errors };
}

export interface FlowApplianceReport {
  readonly url: string;
  records: number;
  error: string | null;
  /** False when the appliance's ring had already overwritten records of the window. */
  complete: boolean;
}

/** Asks every appliance's /api/flows (behind `token`) and merges the answers by start time. */
export async function askFlows(urls: readonly string[], req: FlowWindow, token: string | null): Promise<{ records: FlowRecord[]; reports: FlowApplianceReport[] }> {
  const abort = new AbortController();
  const reports: FlowApplianceReport[] = urls.map((url) => ({ url, records: 0, error: null, complete: true }));
  const bound = (sec: number): string | null => (Number.isFinite(sec) ? String(sec) : null);
  const answers = await Promise.all(
    urls.map(async (url, i) => {
      const report = reports[i]!;
      try {
        const res = await askAppliance(url, '/api/flows', { since: bound(req.since), until: bound(req.until), filter: req.filter, session: req.sessions }, token, abort.signal);
        report.complete = res.headers.get('x-mirrorcap-complete') !== 'false';
        const records = (await res.text())
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as FlowRecord);
        report.records = records.length;
        return records;
      } catch (err) {
        report.error = (err as Error).message;
        return [];
      }
    }),
  );
  return { records: byStart(answers.flat(), req.limit), reports };
}

/** Stable: ties keep the order they were read in. */
function byStart(records: FlowRecord[], limit: number): FlowRecord[] {
  records.sort((a, b) => Number(a.start) - Number(b.start));
  return limit > 0 ? records.slice(0, limit) : records;
}
