/** Feeding a flow table one frame at a time, at a given receive time (as a batch would). */
import type { Decoder } from '../../src/decode/packet.js';
import type { FlowTable } from '../../src/session/flows.js';

const tsSec = new Uint32Array(1);
const tsNsec = new Uint32Array(1);

/** Counts the frame the decoder holds as received at sec.nsec. */
export function addAt(table: FlowTable, d: Decoder, sec: number, nsec = 0): void {
  tsSec[0] = sec;
  tsNsec[0] = nsec;
  table.add(d, tsSec, tsNsec, 0);
}
