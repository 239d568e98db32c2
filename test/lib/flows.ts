/** Feeding a flow table one frame at a time, at a given receive second (as a batch would). */
import type { Decoder } from '../../src/decode/packet.js';
import type { FlowTable } from '../../src/session/flows.js';

const tsSec = new Uint32Array(1);

/** Counts the frame the decoder holds as received in second `sec`. */
export function addAt(table: FlowTable, d: Decoder, sec: number): void {
  tsSec[0] = sec;
  table.add(d, tsSec, 0);
}
