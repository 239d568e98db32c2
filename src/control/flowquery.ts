/**
 * GET /api/flows?since=&until=&filter=&session=: the newest flow records (capture/flowring.ts) of
 * a time window as JSON lines, optionally those a pcap-filter expression matches
 * (query/flow-filter.ts), of the sessions named (repeatable; default all).
 *
 *   ring.query(since, until) ──▶ records ──session? filter?──▶ JSON lines
 */
import type { FlowRing } from '../capture/flowring.js';
import { FilterError } from '../filter/index.js';
import { flowMatcher } from '../query/flow-filter.js';
import { parseTime } from '../query/time.js';

export interface FlowsAnswer {
  readonly status: number;
  /** JSON lines (status 200) or one JSON error object. */
  readonly body: string;
  /** False when records of the window were overwritten in the ring before they were asked for. */
  readonly complete: boolean;
}

/** A time bound in Unix seconds (query/time.ts forms); null when it is none of them. */
function bound(text: string | null, missing: number): number | null {
  if (text === null || text === '') return missing;
  const t = parseTime(text);
  return t === null ? null : t[0] + t[1] / 1e9;
}

export function flowsAnswer(ring: FlowRing | null, params: URLSearchParams): FlowsAnswer {
  const bad = (error: string): FlowsAnswer => ({ status: 400, body: `${JSON.stringify({ error })}\n`, complete: true });
  if (ring === null) return { status: 404, body: `${JSON.stringify({ error: 'no flow records kept: --flow-ring is 0' })}\n`, complete: true };
  const since = bound(params.get('since'), -Infinity);
  const until = bound(params.get('until'), Infinity);
  if (since === null || until === null) return bad('since and until are RFC 3339 times, Unix seconds or a duration back from now, e.g. since=1764460800, since=2026-11-30T00:00:00Z or since=15m');
  let match;
  try {
    match = flowMatcher(params.get('filter'));
  } catch (err) {
    if (err instanceof FilterError) return bad(`filter: ${err.message}`);
    throw err;
  }
  const sessions = new Set(params.getAll('session'));
  const { records, complete } = ring.query(since, until);
  let body = '';
  for (const r of records) if ((sessions.size === 0 || sessions.has(String(r.session))) && (match === null || match(r))) body += `${JSON.stringify(r)}\n`;
  return { status: 200, body, complete };
}
