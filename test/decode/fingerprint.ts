/**
 * Everything a decode produced, for tests that decode the same bytes twice
 * and expect the same answer: placed in an exactly sized Buffer view (a read
 * past the end yields undefined, hence NaN here) and followed by different
 * sentinel bytes (a read past the end that matters changes the answer).
 * Offsets are taken relative to the frame, so the same bytes at another place
 * compare equal.
 */
import type { Decoder } from '../../src/decode/packet.js';
import { L3_ARP, L3_OTHER, L4_ICMP, L4_ICMPV6, L4_TCP, L4_UDP } from '../../src/decode/status.js';

const MAX_VALUES = 128;

/** Writes every field and every getter valid for what parsed into `out`; returns the count. */
export function collect(d: Decoder, out: Float64Array): number {
  const o = d.frameOff;
  let n = 0;
  const put = (v: number | boolean): void => {
    out[n++] = typeof v === 'boolean' ? (v ? 1 : 0) : v;
  };
  put(d.status);
  put(d.errorLayer);
  put(d.errorRequired);
  put(d.errorAvailable);
  put(d.errorLimit);
  put(d.l2Len);
  put(d.etherType);
  put(d.vlanCount);
  put(d.l3);
  put(d.l4);
  put(d.l3Off - o);
  put(d.l4Off - o);
  put(d.l4Len);
  put(d.ipProto);
  put(d.ipVersion);
  put(d.addrLen);
  put(d.ipLength);
  put(d.claimedFrameLength);
  put(d.isFragment);
  put(d.fragOffset);
  put(d.moreFragments);
  put(d.fragId);
  put(d.payloadOff - o);
  put(d.payloadLen);
  for (let i = 0; i < d.vlanCount; i++) {
    put(d.vlanId(i));
    put(d.vlan.tpid(i));
    put(d.vlan.pcp(i));
    put(d.vlan.dei(i));
  }
  if (d.l3 === L3_ARP) {
    put(d.arp.opcode);
    put(d.arp.hardwareType);
    put(d.arp.protocolType);
    put(d.buf[d.arp.targetProtocolOff + d.arp.protocolLen - 1] ?? NaN);
  }
  if (d.l3 !== L3_OTHER && d.l3 !== L3_ARP) {
    put(d.srcAddrOff - o);
    put(d.dstAddrOff - o);
    put(d.ttl);
    for (let i = 0; i < d.addrLen; i += 4) {
      put(d.buf.readUInt32BE(d.srcAddrOff + i));
      put(d.buf.readUInt32BE(d.dstAddrOff + i));
    }
    put(d.ipExt.count);
    for (let i = 0; i < d.ipExt.count; i++) put(d.ipExt.type(i));
  }
  if (d.l4 === L4_TCP) {
    put(d.srcPort);
    put(d.dstPort);
    put(d.tcpSeq);
    put(d.tcpAck);
    put(d.tcpFlags);
    put(d.tcpDataOffset);
    put(d.tcpWindow);
    put(d.tcp.urgentPointer);
  }
  if (d.l4 === L4_UDP) {
    put(d.srcPort);
    put(d.dstPort);
    put(d.udpLength);
  }
  if (d.l4 === L4_ICMP || d.l4 === L4_ICMPV6) {
    put(d.icmpType);
    put(d.icmpCode);
  }
  return n;
}

const scratch = new Float64Array(MAX_VALUES);

export function fingerprint(d: Decoder): string {
  const n = collect(d, scratch);
  return Array.from(scratch.subarray(0, n)).join(',');
}

/** A 32-bit digest of collect(), or -1 when any value is not a finite number. */
export function digest(d: Decoder): number {
  const n = collect(d, scratch);
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) {
    const v = scratch[i];
    if (!Number.isFinite(v)) return -1;
    h = Math.imul(h ^ (v | 0), 0x01000193) ^ Math.imul((v / 0x100000000) | 0, 0x9e3779b1);
  }
  return h >>> 0;
}
