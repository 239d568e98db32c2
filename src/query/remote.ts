/**
 * A query across appliances: each answers /api/query for the flows the NLB sent it, and the
 * answers are merged by timestamp into one pcap (ties: the appliance listed first). No
 * cluster: the NLB spreads, the query merges. An appliance that fails is reported with why;
 * the others' records are still merged.
 *
 *   --from a,b ──GET /api/query?…──▶ pcap stream each ──RemoteSource──▶ mergeSources ──▶ PcapOut
 */
import { parseClassicHeader, walkRecords, FILE_HEADER_LEN, type ClassicHeader, type ClassicSink } from '../pcap/classic.js';
import { MAX_SNAPLEN } from '../pcap/pcap.js';
import { mergeSources, PcapOut, RecordSource, type ChunkSink } from './merge.js';

export interface RemoteRequest {
  readonly filter: string;
  readonly since: string | null;
  readonly until: string | null;
  readonly sessions: readonly string[];
  readonly limit: number;
}

export interface ApplianceReport {
  readonly url: string;
  records: number;
  error: string | null;
}

/** What went wrong with one appliance's answer (it goes into that appliance's report). */
class ApplianceError extends Error {
  readonly code = 'ERR_MIRRORCAP_QUERY_APPLIANCE';
  override readonly name = 'ApplianceError';
}

class RemoteSource extends RecordSource {
  private rest: Buffer = Buffer.alloc(0);
  private readonly sink: ClassicSink;

  private constructor(
    order: number,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    readonly header: ClassicHeader,
    first: Buffer,
    readonly report: ApplianceReport,
  ) {
    super(order);
    this.rest = first;
    this.sink = (_b, off, capLen, origLen, sec, nsec) => {
      this.report.records++;
      this.push(off, capLen, origLen, sec, nsec);
    };
  }

  static async open(order: number, url: string, req: RemoteRequest, token: string | null, report: ApplianceReport, signal: AbortSignal): Promise<RemoteSource | null> {
    try {
      const res = await askAppliance(url, '/api/query', { ...req, limit: req.limit > 0 ? String(req.limit) : null }, token, signal);
      const reader = res.body!.getReader();
      let head = Buffer.alloc(0);
      while (head.length < FILE_HEADER_LEN) {
        const { done, value } = await reader.read();
        if (done) throw new ApplianceError('the answer ended before its pcap header');
        head = Buffer.concat([head, value]);
      }
      const header = parseClassicHeader(head);
      if (header === null) throw new ApplianceError('the answer is not a classic pcap');
      return new RemoteSource(order, reader, header, head.subarray(FILE_HEADER_LEN), report);
    } catch (err) {
      report.error = (err as Error).message;
      return null;
    }
  }

  async close(): Promise<void> {
    await this.reader.cancel().catch(() => {});
  }

  protected async refill(): Promise<boolean> {
    try {
      for (;;) {
        if (this.rest.length > 0) {
          const buf = this.rest;
          this.chunk = buf;
          const used = walkRecords(buf, 0, buf.length, 0, this.header, this.sink);
          this.rest = buf.subarray(used);
          if (used > 0) return true;
        }
        const { done, value } = await this.reader.read();
        if (done) {
          if (this.rest.length > 0) throw new ApplianceError(`the answer ended inside a record (${this.rest.length} bytes)`);
          return false;
        }
        this.rest = this.rest.length === 0 ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : Buffer.concat([this.rest, value]);
      }
    } catch (err) {
      this.report.error = (err as Error).message;
      return false;
    }
  }
}

/**
 * GET `path` of the appliance at `url` with the query parameters that are set (a list repeats
 * the parameter), behind `token`. Resolves a 200 answer with a body; rejects with the status and
 * the appliance's own `error` text for any other.
 */
export async function askAppliance(
  url: string,
  path: string,
  params: Readonly<Record<string, string | readonly string[] | null>>,
  token: string | null,
  signal: AbortSignal,
): Promise<Response> {
  const u = new URL(path, url);
  for (const [name, value] of Object.entries(params)) {
    if (typeof value === 'string') {
      if (value !== '') u.searchParams.set(name, value);
    } else for (const v of value ?? []) u.searchParams.append(name, v);
  }
  const res = await fetch(u, { headers: token === null ? {} : { Authorization: `Bearer ${token}` }, signal });
  if (res.status === 200 && res.body !== null) return res;
  const text = (await res.text().catch(() => '')).trim();
  let why = text;
  try {
    why = (JSON.parse(text) as { error?: string }).error ?? text;
  } catch {
    // not JSON: the text as it is
  }
  throw new ApplianceError(`HTTP ${res.status}${why === '' ? '' : `: ${why}`}`);
}

/** Asks every appliance and merges their answers into `sink`; resolves each appliance's report. */
export async function queryAppliances(urls: readonly string[], req: RemoteRequest, token: string | null, sink: ChunkSink): Promise<ApplianceReport[]> {
  const abort = new AbortController();
  const reports: ApplianceReport[] = urls.map((url) => ({ url, records: 0, error: null }));
  const opened = await Promise.all(urls.map((url, i) => RemoteSource.open(i, url, req, token, reports[i]!, abort.signal)));
  const sources = opened.filter((s): s is RemoteSource => s !== null);
  const out = new PcapOut(sink);
  const linkType = sources[0]?.header.linkType ?? 1;
  const same = sources.filter((s) => {
    if (s.header.linkType === linkType) return true;
    s.report.error = `link type ${s.header.linkType} differs from ${linkType}`;
    void s.close();
    return false;
  });
  out.header(same.reduce((m, s) => Math.max(m, s.header.snaplen), 0) || MAX_SNAPLEN, linkType);
  try {
    await mergeSources(same, out, req.limit, () => false);
  } finally {
    abort.abort();
  }
  return reports;
}
