/**
 * The most recent flow records of every session, in fixed memory, for GET /api/flows.
 *
 *   push(record) ──▶ [r0 r1 r2 … r(capacity-1)] ──▶ query(since, until): oldest first
 *                     └ a full ring overwrites its oldest record and remembers the latest
 *                       `end` it overwrote, so a query reaching back past it says it is incomplete
 *
 * Records are the writer's JSON objects (flowformat.ts FlowRecord): one per flow per interval,
 * created once per interval, never per packet.
 */
import { codedError, ErrorCode } from '../errors.js';
import { inFlowWindow, type FlowRecord } from '../session/flowrender.js';

export const DEFAULT_FLOW_RING = 65536;

export interface FlowQuery {
  /** Records with start <= until and end >= since (Unix seconds), oldest first. */
  readonly records: FlowRecord[];
  /** False when records the window covers were overwritten to make room. */
  readonly complete: boolean;
}

export class FlowRing {
  private readonly slots: (FlowRecord | undefined)[];
  private next = 0;
  private size = 0;
  /** Latest `end` among overwritten records; null while none was overwritten. */
  private lostUntil: number | null = null;

  constructor(readonly capacity = DEFAULT_FLOW_RING) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw codedError(ErrorCode.INVALID_ARGUMENT, `flow ring capacity must be a whole number of at least 1, got ${capacity}`, RangeError);
    this.slots = new Array<FlowRecord | undefined>(capacity);
  }

  get length(): number {
    return this.size;
  }

  push(r: FlowRecord): void {
    const old = this.slots[this.next];
    if (old !== undefined) this.lostUntil = Math.max(this.lostUntil ?? -Infinity, Number(old.end));
    this.slots[this.next] = r;
    this.next = (this.next + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  query(since = -Infinity, until = Infinity): FlowQuery {
    const records: FlowRecord[] = [];
    const first = (this.next - this.size + this.capacity) % this.capacity;
    for (let k = 0; k < this.size; k++) {
      const r = this.slots[(first + k) % this.capacity]!;
      if (inFlowWindow(r, since, until)) records.push(r);
    }
    return { records, complete: this.lostUntil === null || this.lostUntil < since };
  }
}
