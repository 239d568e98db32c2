/**
 * Everything a decode produced, as one string, for tests that decode the same
 * bytes twice and expect the same answer: placed in an exactly sized Buffer
 * (a read past the end yields undefined and NaN) and followed by different
 * sentinel bytes (a read past the end changes the answer).
 */
import type { Decoder } from '../../src/decode/packet.js';
import { L3_ARP, L3_OTHER, L4_ICMP, L4_ICMPV6, L4_TCP, L4_UDP } from '../../src/decode/status.js';

export function fingerprint(d: Decoder): string {
  // Offsets are relative to the frame so the same bytes at another place compare equal.
  const o = d.frameOff;
  const v: (number | boolean)[] = [
    d.status,
    d.errorLayer,
    d.errorRequired,
    d.errorAvailable,
    d.errorLimit,
    d.l2Len,
    d.etherType,
    d.vlanCount,
    d.l3,
    d.l4,
    d.l3Off - o,
    d.l4Off - o,
    d.l4Len,
    d.ipProto,
    d.ipVersion,
    d.addrLen,
    d.ipLength,
    d.claimedFrameLength,
    d.isFragment,
    d.fragOffset,
    d.moreFragments,
    d.fragId,
    d.payloadOff - o,
    d.payloadLen,
  ];
  for (let i = 0; i < d.vlanCount; i++) v.push(d.vlanId(i), d.vlan.tpid(i), d.vlan.pcp(i), d.vlan.dei(i));
  if (d.l3 === L3_ARP) v.push(d.arp.opcode, d.arp.hardwareLen, d.arp.protocolLen);
  if (d.l3 !== L3_OTHER && d.l3 !== L3_ARP) {
    v.push(d.srcAddrOff - o, d.dstAddrOff - o, d.ttl);
    for (let i = 0; i < d.addrLen; i++) v.push(d.buf[d.srcAddrOff + i], d.buf[d.dstAddrOff + i]);
    v.push(d.ipExt.count);
  }
  if (d.l4 === L4_TCP) v.push(d.srcPort, d.dstPort, d.tcpSeq, d.tcpAck, d.tcpFlags, d.tcpDataOffset, d.tcpWindow);
  if (d.l4 === L4_UDP) v.push(d.srcPort, d.dstPort, d.udpLength);
  if (d.l4 === L4_ICMP || d.l4 === L4_ICMPV6) v.push(d.icmpType, d.icmpCode);
  return v.map(String).join(',');
}

/** Numbers only, no NaN/undefined: what a read past the end of an exact Buffer would leave. */
export function allFinite(fp: string): boolean {
  return !/NaN|undefined/.test(fp);
}
