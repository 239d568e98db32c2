/**
 * GET /api/query?filter=&since=&until=&session=&limit=: the answer of `mirrorcap query` over
 * this appliance's store, streamed (chunked) as it is produced. At most `maxQueries` run at
 * once (429 beyond); a client that goes away stops its query at the next record or read; the
 * query waits on the client (backpressure) and yields between reads, so capture, which runs
 * on its own buffers and timers, is never held by it. The summary (files through their index,
 * scans by reason, bytes read, file errors) follows the data as the trailer X-Mirrorcap-Query.
 *
 *   request ─params─▶ runQuery(store) ─chunks─▶ res.write (await drain) ─▶ trailer, end
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FilterError } from '../filter/index.js';
import type { IndexProblem } from '../finish/index-format.js';
import type { Logger } from '../log.js';
import { QueryError, runQuery } from '../query/query.js';
import { parseTime } from '../query/time.js';
import type { Time } from '../query/file-source.js';
import { sendJson } from './http.js';

export const PCAP_CONTENT_TYPE = 'application/vnd.tcpdump.pcap';
export const QUERY_TRAILER = 'X-Mirrorcap-Query';

export class QueryEndpoint {
  running = 0;
  /** Queries by how they ended: answered whole, refused (429), stopped by the client, bad request. */
  readonly ended = { ok: 0, refused: 0, aborted: 0, bad_request: 0 };
  /** Files scanned instead of read through their index, by why. */
  readonly scans: Record<IndexProblem | 'part', number> = { missing: 0, corrupt: 0, version: 0, stale: 0, part: 0 };

  constructor(
    private readonly out: string,
    private readonly maxQueries: number,
    private readonly log: Logger,
    /** A finished file whose index a query could not trust: have it indexed again. */
    private readonly reindex: (path: string) => void,
  ) {}

  readonly handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://query');
    const p = url.searchParams;
    const bad = (why: string): void => {
      this.ended.bad_request++;
      sendJson(res, 400, { error: why });
    };
    const times: Array<Time | null> = [];
    for (const name of ['since', 'until']) {
      const v = p.get(name);
      const t = v === null || v === '' ? null : parseTime(v);
      if (v !== null && v !== '' && t === null) return bad(`invalid ${name} "${v}": expected RFC 3339, Unix seconds, or a duration back from now (15m, 2h)`);
      times.push(t);
    }
    const limitText = p.get('limit') ?? '0';
    if (!/^\d{1,15}$/.test(limitText)) return bad(`invalid limit "${limitText}": expected a whole number`);
    if (this.running >= this.maxQueries) {
      this.ended.refused++;
      res.setHeader('Retry-After', '1');
      return sendJson(res, 429, { error: `${this.running} queries running, at most ${this.maxQueries} (max-queries)` });
    }
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'Content-Type': PCAP_CONTENT_TYPE, 'Cache-Control': 'no-store' });
      return void res.end();
    }
    this.running++;
    let gone = false;
    res.on('close', () => (gone = !res.writableFinished));
    const t0 = Date.now();
    try {
      const stats = await runQuery(
        {
          out: this.out,
          sessions: p.getAll('session').flatMap((s) => s.split(',')).filter((s) => s !== ''),
          filter: p.get('filter') ?? '',
          since: times[0]!,
          until: times[1]!,
          limit: Number(limitText),
        },
        async (chunk) => {
          if (gone) return;
          if (!res.headersSent) res.writeHead(200, { 'Content-Type': PCAP_CONTENT_TYPE, 'Cache-Control': 'no-store', Trailer: QUERY_TRAILER });
          if (!res.write(chunk)) await new Promise<void>((resolve) => {
            res.once('drain', resolve);
            res.once('close', resolve);
          });
        },
        { stopped: () => gone, badIndex: (path) => this.reindex(path) },
      );
      for (const [k, v] of Object.entries(stats.scanned)) this.scans[k as keyof typeof this.scans] += v;
      if (gone) {
        this.ended.aborted++;
        this.log.info({ event: 'query_aborted', filter: p.get('filter') ?? '', ms: Date.now() - t0 }, 'query client went away; query stopped');
        return;
      }
      res.addTrailers({ [QUERY_TRAILER]: JSON.stringify(stats) });
      res.end();
      this.ended.ok++;
      this.log.info({ event: 'query', filter: p.get('filter') ?? '', files: stats.files, indexed: stats.indexed, bytesRead: stats.bytesRead, ms: Date.now() - t0 }, 'query answered');
    } catch (err) {
      if ((err instanceof QueryError || err instanceof FilterError) && !res.headersSent) return bad(err.message);
      throw err;
    } finally {
      this.running--;
    }
  };
}
