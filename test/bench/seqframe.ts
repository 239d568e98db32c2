/**
 * The datagrams the load generator sends and the sequence checker reads back.
 *
 *  UDP payload to port 4789 (RFC 7348):
 *    0  flags 0x08 (I bit)   1..3 reserved   4..6 VNI   7 reserved
 *    8  inner Ethernet frame, frameLen bytes:
 *         0  dst 02:00:00:00:00:02   6  src 02:00:00:00:00:01   12  type 0x0800
 *        14  IPv4, 20 bytes, 198.18.0.1 -> 198.18.0.2 (RFC 2544 benchmark range), UDP
 *        34  UDP 10000 + VNI % 50000 -> 5001, checksum 0 (none)
 *        42  payload: "MCSQ" | VNI u32 | seq high u32 | seq low u32 | zeros to frameLen
 *
 * The VNI travels in the payload too, so a checker needs no session mapping: the same
 * code reads the appliance's per-session files (inner frames) and a `tcpdump -i lo`
 * capture (outer packets).
 */
import { VXLAN_HEADER_LEN, writeVxlanHeader } from '../../src/decode/vxlan.js';
import { checksum } from '../lib/frames.js';

export { VXLAN_HEADER_LEN };
export const SEQ_MAGIC = 0x4d435351; // "MCSQ"
/** Offset of the magic inside the inner Ethernet frame. */
export const SEQ_PAYLOAD_OFF = 42;
export const SEQ_PAYLOAD_LEN = 16;
export const MIN_FRAME_LEN = SEQ_PAYLOAD_OFF + SEQ_PAYLOAD_LEN;
export const MAX_FRAME_LEN = 9000;

/** 7:64 / 4:576 / 1:1500 by packet count, interleaved so any 12 consecutive packets hold the mix. */
export const IMIX: readonly number[] = [64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 64, 576];

/** '64', '1400', 'imix' -> the repeating pattern of inner frame lengths. */
export function frameSizes(spec: string): readonly number[] {
  if (spec.toLowerCase() === 'imix') return IMIX;
  const n = Number(spec);
  if (!Number.isInteger(n) || n < MIN_FRAME_LEN || n > MAX_FRAME_LEN) {
    throw new RangeError(`--size must be imix or an integer frame length in ${MIN_FRAME_LEN}..${MAX_FRAME_LEN}, got ${spec}`);
  }
  return [n];
}

/** Writes a whole datagram for vni with sequence 0 at buf[off]; returns its length. */
export function writeDatagram(buf: Buffer, off: number, vni: number, frameLen: number): number {
  const end = off + VXLAN_HEADER_LEN + frameLen;
  buf.fill(0, off, end);
  writeVxlanHeader(buf, off, vni);
  const eth = off + VXLAN_HEADER_LEN;
  buf.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00], eth);
  const ip = eth + 14;
  buf.set([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2], ip);
  buf.writeUInt16BE(frameLen - 14, ip + 2);
  buf.writeUInt16BE(checksum(buf.subarray(ip, ip + 20)), ip + 10);
  const udp = ip + 20;
  buf.writeUInt16BE(10000 + (vni % 50000), udp);
  buf.writeUInt16BE(5001, udp + 2);
  buf.writeUInt16BE(frameLen - 34, udp + 4);
  const p = eth + SEQ_PAYLOAD_OFF;
  buf.writeUInt32BE(SEQ_MAGIC, p);
  buf.writeUInt32BE(vni, p + 4);
  return end - off;
}

/** Sets the sequence number of the datagram written at buf[off]. */
export function setSeq(buf: Buffer, off: number, seq: number): void {
  const p = off + VXLAN_HEADER_LEN + SEQ_PAYLOAD_OFF + 8;
  buf.writeUInt32BE(Math.floor(seq / 0x1_0000_0000), p);
  buf.writeUInt32BE(seq >>> 0, p + 4);
}
