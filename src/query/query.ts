/**
 * A query over the store of one appliance: every record of the selected sessions' files
 * (finished, and the flushed part of open .part files) that lies in the time window and
 * matches the filter, merged by timestamp into one pcap; ties go to the session whose name
 * sorts first, then to the earlier file (what mergecap does given the files in that order).
 *
 *   out/<session>/*.pcap[.part] ─sorted─▶ FileSource each (index or scan) ─▶ mergeSources ─▶ PcapOut
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isValidSessionName } from '../config.js';
import { COMPRESSED_SUFFIX, parseCaptureFileName, PART_SUFFIX } from '../capture/naming.js';
import { MAX_SNAPLEN } from '../pcap/pcap.js';
import { FileSource, Filters, newStats, type OpenOptions, type QueryStats, type Window } from './file-source.js';
import { mergeSources, PcapOut, type ChunkSink } from './merge.js';

export interface QueryRequest extends Window {
  readonly out: string;
  /** Empty: every session. */
  readonly sessions: readonly string[];
  readonly filter: string;
  /** Most records to answer; 0 = all. */
  readonly limit: number;
}

export interface QueryHooks {
  /** The client went away: stop reading. */
  readonly stopped?: () => boolean;
  readonly badIndex?: OpenOptions['badIndex'];
  readonly syncReads?: OpenOptions['syncReads'];
  /** Called as files are examined (for a progress line). */
  readonly progress?: (stats: QueryStats, total: number) => void;
}

/** A query that cannot start: an unknown session. */
export class QueryError extends Error {
  readonly code = 'ERR_MIRRORCAP_QUERY';
  override readonly name = 'QueryError';
}

interface Candidate {
  readonly path: string;
  readonly part: boolean;
}

const COMPRESSED: readonly string[] = Object.values(COMPRESSED_SUFFIX);

/** The capture files of the selected sessions, in tie-break order. */
export async function selectFiles(out: string, sessions: readonly string[]): Promise<Candidate[]> {
  const dirs = (await readdir(out, { withFileTypes: true }).catch(() => [])).filter((d) => d.isDirectory() && isValidSessionName(d.name)).map((d) => d.name);
  for (const s of sessions) if (!dirs.includes(s)) throw new QueryError(`no session "${s}" in ${out}`);
  const chosen = (sessions.length === 0 ? dirs : dirs.filter((d) => sessions.includes(d))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const files: Candidate[] = [];
  for (const session of chosen) {
    const named = (await readdir(join(out, session)).catch(() => []))
      .map((name) => ({ name, parsed: parseCaptureFileName(session, name) }))
      .filter(({ parsed }) => parsed !== null && (parsed.suffix === '' || parsed.suffix === PART_SUFFIX || COMPRESSED.includes(parsed.suffix)))
      .sort((a, b) => a.parsed!.stamp.localeCompare(b.parsed!.stamp) || a.parsed!.seq - b.parsed!.seq || (a.name < b.name ? -1 : 1));
    let previous: string | null = null;
    for (const { name, parsed } of named) {
      // X.pcap and X.pcap.gz both there (compression stopped before removing X.pcap): the same records, read once.
      if (parsed!.capture === previous) continue;
      previous = parsed!.capture;
      files.push({ path: join(out, session, name), part: parsed!.suffix === PART_SUFFIX });
    }
  }
  return files;
}

/** Runs the query into `sink`; resolves what it saw. Throws QueryError or FilterError before writing anything. */
export async function runQuery(req: QueryRequest, sink: ChunkSink, hooks: QueryHooks = {}): Promise<QueryStats> {
  const filters = new Filters(req.filter);
  const files = await selectFiles(req.out, req.sessions);
  const stats = newStats();
  const sources: FileSource[] = [];
  let tick = Date.now();
  for (const [i, f] of files.entries()) {
    if (hooks.stopped?.() === true) break;
    const s = await FileSource.open(f.path, f.part, i, { filters, window: req, stats, badIndex: hooks.badIndex, syncReads: hooks.syncReads });
    if (s !== null) sources.push(s);
    if (hooks.progress !== undefined && Date.now() - tick > 100) {
      tick = Date.now();
      hooks.progress(stats, files.length);
    }
  }
  const out = new PcapOut(sink);
  // The files of one store share a link type; a file of another would need a pcapng answer.
  const linkType = sources[0]?.header.linkType ?? 1;
  const odd = sources.filter((s) => s.header.linkType !== linkType);
  for (const s of odd) {
    stats.errors.push(`${s.path}: link type ${s.header.linkType} differs from the first file's ${linkType}; left out`);
    await s.close();
  }
  const same = sources.filter((s) => s.header.linkType === linkType);
  out.header(same.reduce((m, s) => Math.max(m, s.header.snaplen), 0) || MAX_SNAPLEN, linkType);
  const progress = hooks.progress;
  const timer = progress === undefined ? null : setInterval(() => progress(stats, files.length), 200);
  try {
    await mergeSources(same, out, req.limit, hooks.stopped ?? (() => false));
  } finally {
    if (timer !== null) clearInterval(timer);
  }
  return stats;
}
