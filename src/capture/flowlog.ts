/**
 * Flow-log files: one gzip text file per session and sealed interval, in the layout AWS
 * delivers VPC Flow Logs to S3, so Athena's VPC flow log table, Filebeat's aws module and any
 * other reader of that bucket layout take them as they are (docs/flows.md):
 *
 *   <root>/AWSLogs/<account>/vpcflowlogs/<region>/<yyyy>/<mm>/<dd>/
 *       <account>_vpcflowlogs_<region>_<id>_<yyyymmddThhmmZ>_<hash>.log.gz
 *
 *   sealed interval ──▶ header, records, NODATA/SKIPDATA ──▶ gzip ──▶ <prefix>_p<pid>-<n>.log.gz.part
 *    (flows.ts)         rendered a chunk at a time,         │         ──fsync──▶ rename to the final name ──▶ fsync dir
 *                       the event loop free between chunks  └──▶ sha-256 of the text: <hash>
 *                                    └──▶ the newest records into the FlowRing (the JSON view)
 *
 * <id> is the session's flow log id on this appliance: "fl-" and 17 hex digits of SHA-256 over
 * the node name and the session name, so every session of every appliance has its own, the
 * same across restarts. <hash> is 8 hex digits of SHA-256 over the id and the file's text: the
 * same records give the same name, and an existing file is never replaced (a taken name is
 * hashed again with a counter). The stamp is the interval's start (UTC), as AWS names a file by
 * the window its records end in.
 *
 * A file is written whole or not at all under its final name. A process killed while writing
 * leaves the `.part`; recoverFlowLogs() at the next start keeps its whole lines (gzip read as far
 * as it goes) in a finished file, deletes one that holds no record, and sets aside one that is
 * not gzip as `.corrupt`.
 */
import { createHash } from 'node:crypto';
import { lstat, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zlibConstants, createGzip, gunzipSync } from 'node:zlib';
import type { SessionSettings } from '../config.js';
import { FlowFormatError, parseFlowFormat, type FlowFormat, type FlowSessionInfo } from '../flowformat.js';
import { codedError, ErrorCode } from '../errors.js';
import { FlowTable, type FlowBudget, type FlowInterval } from '../session/flows.js';
import { FlowRenderer } from '../session/flowrender.js';
import type { FlowOutput, FlowOutputStats } from '../session/session.js';
import type { FlowRing } from './flowring.js';
import { CORRUPT_SUFFIX, PART_SUFFIX } from './naming.js';
import { syncDir } from './recover.js';
import { makeFolder } from './folder.js';
import { FILE_MODE } from './writer.js';

export const FLOW_LOG_SUFFIX = '.log.gz';
/** Path segment for an account or region the session's config does not give. */
export const UNKNOWN_PATH_VALUE = 'unknown';
/** Records rendered between two yields to the event loop. */
const CHUNK_RECORDS = 2048;

const PART_NAME = /^(.+)_vpcflowlogs_(.+)_(fl-[0-9a-f]{17})_(\d{8}T\d{4}Z)_p\d+-\d+\.log\.gz\.part$/;

const FINISHED_NAME = /^[^_/]+_vpcflowlogs_[^_/]+_(fl-[0-9a-f]{17})_(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})Z_[0-9a-f]{8}\.log\.gz$/;

/** A finished flow-log file's flow log id and interval start (Unix seconds) from its name; null for any other name. */
export function parseFlowLogName(name: string): { id: string; start: number } | null {
  const m = FINISHED_NAME.exec(name);
  if (m === null) return null;
  const n = (i: number): number => Number(m[i]);
  return { id: m[1]!, start: Date.UTC(n(2), n(3) - 1, n(4), n(5), n(6)) / 1000 };
}

/** The flow log id of a session on a node (see the module comment). */
export function flowLogId(node: string, session: string): string {
  return `fl-${createHash('sha256').update(`${node}\0${session}`).digest('hex').slice(0, 17)}`;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** yyyymmddThhmmZ of a Unix second, UTC. */
export function flowLogStamp(sec: number): string {
  const d = new Date(sec * 1000);
  return `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}T${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}Z`;
}

/** The folder of the files whose interval starts at `sec`. */
export function flowLogDir(root: string, account: string, region: string, sec: number): string {
  const d = new Date(sec * 1000);
  return join(root, 'AWSLogs', account, 'vpcflowlogs', region, pad(d.getUTCFullYear(), 4), pad(d.getUTCMonth() + 1), pad(d.getUTCDate()));
}

/** The account and region of a session's flow-log paths; throws FlowFormatError for values that cannot be folder names. */
export function flowPathValues(info: FlowSessionInfo): [account: string, region: string] {
  const account = info.values['account-id'] ?? UNKNOWN_PATH_VALUE;
  const region = info.values['region'] ?? UNKNOWN_PATH_VALUE;
  // They become folder and file names (resolveFlowSessionInfo checks them; this is the last line).
  for (const v of [account, region]) {
    if (!/^[A-Za-z0-9-]{1,64}$/.test(v)) throw new FlowFormatError(`flow log account or region ${JSON.stringify(v)} cannot be part of a path`);
  }
  return [account, region];
}

/** A finished flow-log file. */
export interface FlowFile {
  readonly session: string;
  readonly path: string;
  /** The interval, Unix seconds: [start, end); closedAt < end when it was flushed early. */
  readonly start: number;
  readonly end: number;
  readonly closedAt: number;
  readonly partial: boolean;
  /** OK records (flows). */
  readonly flows: number;
  /** A NODATA record was written (no packet in the interval). */
  readonly noData: boolean;
  /** A SKIPDATA record was written (table full, or the session dropped packets). */
  readonly skipData: boolean;
  /** Size on disk (gzip). */
  readonly bytes: number;
}

export interface FlowLogOptions {
  /** The flows folder: <out>/flows. */
  readonly root: string;
  readonly session: string;
  /** This appliance's name (the host name by default): part of the flow log id. */
  readonly node: string;
  /** Receives the newest records for the JSON view; null for none. */
  readonly ring?: FlowRing | null;
}

/** Writes one session's sealed intervals, one file each, in the order they were sealed. */
export class FlowLogWriter {
  readonly id: string;
  filesWritten = 0;
  recordsWritten = 0;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: FlowLogOptions) {
    this.id = flowLogId(opts.node, opts.session);
  }

  /**
   * Queues an interval, to be rendered with the session's values of when it was sealed; resolves
   * with its file once renamed and synced, rejects on an I/O error (the `.part` stays for recovery).
   */
  write(iv: FlowInterval, renderer: FlowRenderer): Promise<FlowFile> {
    const p = this.tail.then(() => this.writeNow(iv, renderer));
    this.tail = p.catch(() => undefined);
    return p;
  }

  /** Resolves once every queued interval is written (or failed). */
  async idle(): Promise<void> {
    await this.tail;
  }

  private async writeNow(iv: FlowInterval, renderer: FlowRenderer): Promise<FlowFile> {
    const { ring, session } = this.opts;
    const noData = iv.count === 0 && iv.skippedPackets === 0 && iv.droppedPackets === 0;
    const skipData = iv.skippedPackets > 0 || iv.droppedPackets > 0;
    const ringFrom = ring ? Math.max(0, iv.count - ring.capacity) : iv.count;
    async function* text(): AsyncGenerator<string> {
      let chunk = `${renderer.header}\n`;
      for (let s = 0; s < iv.count; s++) {
        chunk += `${renderer.flow(iv.slots, s)}\n`;
        if (s >= ringFrom) ring!.push(renderer.record(session, iv.slots, s));
        if ((s + 1) % CHUNK_RECORDS === 0) {
          yield chunk;
          chunk = '';
          await yieldToLoop();
        }
      }
      if (noData) {
        chunk += `${renderer.status('NODATA', iv.start, iv.closedAt)}\n`;
        ring?.push(renderer.statusRecord(session, 'NODATA', iv.start, iv.closedAt));
      }
      if (skipData) {
        chunk += `${renderer.status('SKIPDATA', iv.start, iv.closedAt)}\n`;
        ring?.push(renderer.statusRecord(session, 'SKIPDATA', iv.start, iv.closedAt));
      }
      yield chunk;
    }
    const [account, region] = flowPathValues(renderer.info);
    const dir = flowLogDir(this.opts.root, account, region, iv.start);
    const prefix = `${account}_vpcflowlogs_${region}_${this.id}_${flowLogStamp(iv.start)}`;
    const { path, bytes } = await writeFlowFile(dir, prefix, this.id, text());
    this.filesWritten++;
    this.recordsWritten += iv.count + (noData ? 1 : 0) + (skipData ? 1 : 0);
    return { session, path, start: iv.start, end: iv.end, closedAt: iv.closedAt, partial: iv.partial, flows: iv.count, noData, skipData, bytes };
  }
}

export type FlowSettings = Pick<SessionSettings, 'flows' | 'flowFields'>;

export interface SessionFlowLogOptions extends FlowLogOptions {
  /** The record format (--flow-format). */
  readonly format: FlowFormat;
  /** The session's settings: flows on or off, its flow fields (configure() takes new ones). */
  readonly settings: FlowSettings;
  /** Aggregation interval, whole seconds. */
  readonly intervalSec: number;
  readonly budget: FlowBudget;
  /** The session's drop counters (SKIPDATA when they grow). */
  readonly drops?: Float64Array;
  readonly graceSec?: number;
  /** A file is finished (for the catalog, post-rotate, S3). */
  readonly fileClosed?: (file: FlowFile) => void;
  /** An interval could not be written; its flows are released, what reached the disk is recovered at the next start. */
  readonly writeError?: (err: NodeJS.ErrnoException, interval: FlowInterval) => void;
}

/**
 * One session's flow records end to end: its flow table (the hot path calls `table.add()` while
 * the session's flows are on), and each sealed interval written to its file, then handed back
 * to the table. It is the session's FlowOutput (session/session.ts).
 */
export class SessionFlowLog implements FlowOutput {
  readonly table: FlowTable;
  readonly writer: FlowLogWriter;
  writeErrors = 0;
  private readonly pending = new Set<Promise<void>>();
  private enabled: boolean;
  private renderer: FlowRenderer;

  constructor(private readonly opts: SessionFlowLogOptions) {
    this.writer = new FlowLogWriter(opts);
    this.table = new FlowTable({ intervalSec: opts.intervalSec, budget: opts.budget, drops: opts.drops, graceSec: opts.graceSec, sealed: (iv) => this.sealed(iv) });
    flowPathValues(opts.settings.flowFields);
    this.enabled = opts.settings.flows;
    this.renderer = new FlowRenderer(opts.format, opts.settings.flowFields);
  }

  /**
   * A reload: flows turned off, or new flow fields, end the open interval now (its records
   * under the values they were counted with); flows turned on start at the next packet.
   */
  configure(settings: FlowSettings): void {
    if (settings.flows === this.enabled && sameFlowInfo(settings.flowFields, this.renderer.info)) return;
    flowPathValues(settings.flowFields);
    if (this.enabled) this.table.flush(Math.floor(Date.now() / 1000));
    this.enabled = settings.flows;
    this.renderer = new FlowRenderer(this.opts.format, settings.flowFields);
  }

  stats(): FlowOutputStats {
    return { filesWritten: this.writer.filesWritten, recordsWritten: this.writer.recordsWritten, writeErrors: this.writeErrors };
  }

  /** Once a second (live): closes an interval that has ended (NODATA if it saw nothing). */
  tick(nowSec: number): void {
    if (this.enabled) this.table.tick(Math.floor(nowSec));
  }

  /**
   * Shutdown (SIGTERM): writes the open interval as it stands (partial, up to nowSec; Infinity
   * = its end, when the packets' own time is the clock), then waits for every file.
   */
  async close(nowSec: number): Promise<void> {
    this.table.stop(Math.floor(nowSec));
    await this.idle();
  }

  /** Resolves once every sealed interval is written (or failed), reported and handed back. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending);
  }

  private sealed(iv: FlowInterval): void {
    const done: Promise<void> = this.writer
      .write(iv, this.renderer)
      .then(
        (file) => this.opts.fileClosed?.(file),
        (err: NodeJS.ErrnoException) => {
          this.writeErrors++;
          this.opts.writeError?.(err, iv);
        },
      )
      .finally(() => {
        this.table.recycle(iv);
        this.pending.delete(done);
      });
    this.pending.add(done);
  }
}

function sameFlowInfo(a: FlowSessionInfo, b: FlowSessionInfo): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

let partSeq = 0;

/**
 * Streams `text` through gzip into `<dir>/<prefix>_p<pid>-<n>.log.gz.part`, syncs it, and renames
 * it to `<prefix>_<hash>.log.gz` (a name not yet taken), then syncs the folder.
 */
async function writeFlowFile(dir: string, prefix: string, id: string, text: AsyncIterable<string>): Promise<{ path: string; bytes: number }> {
  await makeFolder(dir);
  const part = join(dir, `${prefix}_p${process.pid}-${partSeq++}${FLOW_LOG_SUFFIX}${PART_SUFFIX}`);
  const sha = createHash('sha256').update(`${id}\n`);
  const fh = await open(part, 'wx', FILE_MODE);
  let bytes: number;
  try {
    await pipeline(
      async function* () {
        for await (const chunk of text) {
          sha.update(chunk);
          yield chunk;
        }
      },
      createGzip(),
      // Straight to the handle, which stays ours for the sync below (a FileHandle's own write
      // stream keeps a reference that close() would wait on).
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          fh.write(chunk).then(() => done(), done);
        },
      }),
    );
    await fh.sync();
    bytes = (await fh.stat()).size;
  } finally {
    await fh.close();
  }
  const path = await freeFlowName(dir, prefix, sha);
  await rename(part, path);
  await syncDir(dir);
  return { path, bytes };
}

/** `<prefix>_<8 hex>.log.gz` from the text's hash; hashed again with a counter while the name is taken. */
async function freeFlowName(dir: string, prefix: string, sha: ReturnType<typeof createHash>): Promise<string> {
  for (let n = 0; ; n++) {
    const h = (n === 0 ? sha.copy() : sha.copy().update(`\n${n}`)).digest('hex').slice(0, 8);
    const path = join(dir, `${prefix}_${h}${FLOW_LOG_SUFFIX}`);
    try {
      await lstat(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return path;
      throw err;
    }
  }
}

/**
 * recovered:   its whole lines were written to a finished file (finalPath); the `.part` removed.
 * deleted:     it held no whole record (only a header, or nothing); removed.
 * quarantined: not gzip, or not a flow log; renamed to `.corrupt` for a human, never deleted.
 * failed:      an I/O error; the `.part` stays and is tried again at the next start.
 */
export interface FlowRecovery {
  readonly path: string;
  readonly finalPath: string | null;
  readonly action: 'recovered' | 'deleted' | 'quarantined' | 'failed';
  readonly records: number;
  readonly reason: string | null;
}

/** Recovers every `.log.gz.part` under `root` (a killed writer's); resolves the results in path order. */
export async function recoverFlowLogs(root: string): Promise<FlowRecovery[]> {
  const names = await readdir(root, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const results: FlowRecovery[] = [];
  for (const rel of names.filter((n) => n.endsWith(FLOW_LOG_SUFFIX + PART_SUFFIX)).sort()) {
    const path = join(root, rel);
    try {
      results.push(await recoverFlowPart(path));
    } catch (err) {
      results.push({ path, finalPath: null, action: 'failed', records: 0, reason: (err as Error).message });
    }
  }
  return results;
}

async function recoverFlowPart(path: string): Promise<FlowRecovery> {
  const dir = dirname(path);
  const name = PART_NAME.exec(basename(path));
  let text: string;
  try {
    // As far as the gzip stream goes: a killed writer's file simply ends early.
    text = gunzipSync(await readFile(path), { finishFlush: zlibConstants.Z_SYNC_FLUSH }).toString('utf8');
  } catch (err) {
    return quarantine(path, `not a gzip stream: ${(err as Error).message}`);
  }
  const whole = text.slice(0, text.lastIndexOf('\n') + 1);
  const lines = whole === '' ? [] : whole.slice(0, -1).split('\n');
  if (name === null || (lines.length > 0 && !isHeader(lines[0]!))) return quarantine(path, 'not a flow log written by mirrorcap');
  if (lines.length < 2) {
    await unlink(path);
    await syncDir(dir);
    return { path, finalPath: null, action: 'deleted', records: 0, reason: null };
  }
  const prefix = `${name[1]}_vpcflowlogs_${name[2]}_${name[3]}_${name[4]}`;
  const { path: finalPath } = await writeFlowFile(dir, prefix, name[3]!, (async function* () {
    yield whole;
  })());
  await unlink(path);
  await syncDir(dir);
  return { path, finalPath, action: 'recovered', records: lines.length - 1, reason: null };
}

function isHeader(line: string): boolean {
  try {
    parseFlowFormat(line.split(' ').map((f) => `\${${f}}`).join(' '));
    return true;
  } catch {
    return false;
  }
}

async function quarantine(path: string, reason: string): Promise<FlowRecovery> {
  const finalPath = `${path.slice(0, -(FLOW_LOG_SUFFIX + PART_SUFFIX).length)}${CORRUPT_SUFFIX}`;
  try {
    await lstat(finalPath);
    throw codedError(ErrorCode.INVALID_STATE, `${finalPath} already exists`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await rename(path, finalPath);
  await syncDir(dirname(path));
  return { path, finalPath, action: 'quarantined', records: 0, reason };
}
