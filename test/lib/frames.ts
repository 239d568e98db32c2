/** Building test traffic: inner Ethernet/IPv4/UDP frames and their VXLAN datagrams. */
import { writeVxlanHeader, VXLAN_HEADER_LEN } from '../../src/decode/vxlan.js';

/**
 * An Ethernet II / IPv4 / UDP frame of exactly `size` bytes (>= 60) whose payload starts
 * with `tag` (32 bits) and `seq` (32 bits) and is otherwise filled from `seed`.
 */
export function udpFrame(size: number, tag: number, seq: number, seed = seq): Buffer {
  const f = Buffer.alloc(size);
  f.set([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01], 0);
  f.writeUInt16BE(0x0800, 12);
  const ipLen = size - 14;
  f[14] = 0x45;
  f.writeUInt16BE(ipLen, 16);
  f.writeUInt16BE(seq & 0xffff, 18);
  f[22] = 64;
  f[23] = 17;
  f.set([10, 0, (tag >> 8) & 0xff, tag & 0xff, 10, 1, 0, 1], 26);
  f.writeUInt16BE(ipv4Checksum(f, 14), 24);
  f.writeUInt16BE(40000 + (tag % 1000), 34);
  f.writeUInt16BE(5001, 36);
  f.writeUInt16BE(ipLen - 20, 38);
  f.writeUInt32BE(tag >>> 0, 42);
  f.writeUInt32BE(seq >>> 0, 46);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 50; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    f[i] = x & 0xff;
  }
  return f;
}

export function vxlanDatagram(vni: number, frame: Buffer): Buffer {
  const d = Buffer.alloc(VXLAN_HEADER_LEN + frame.length);
  writeVxlanHeader(d, 0, vni);
  frame.copy(d, VXLAN_HEADER_LEN);
  return d;
}

/** The header checksum of the 20-byte IPv4 header at buf[off] (its checksum field zero). */
export function ipv4Checksum(buf: Buffer, off: number): number {
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += buf.readUInt16BE(off + i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
