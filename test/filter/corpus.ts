/**
 * The frames the filter differential test runs on: every fixture in pcaps/, every capture in
 * ../shared/pcaps/real (outer frames, and the inner frames of the VXLAN ones, decapsulated by
 * `mirrorcap decap`), and a hand-built set aimed at the corners of libpcap's semantics. Each
 * frame keeps its length on the wire; truncated copies (capLen < wireLen) are added so loads
 * past the captured end are exercised. The raw-IP corpus is the IP packets of the Ethernet
 * one without their Ethernet header, plus a few broken ones.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CaptureReader } from '../../src/pcap/reader.js';
import { decap } from '../../src/commands/decap.js';
import { resolveConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { formatMac } from '../../src/decode/ethernet.js';
import { formatIpv4 } from '../../src/decode/ipv4.js';
import { formatIpv6 } from '../../src/decode/ipv6.js';
import { Decoder } from '../../src/decode/packet.js';
import { L4_TCP, L4_UDP } from '../../src/decode/status.js';
import {
  ah,
  arp,
  esp,
  ether,
  extOpts,
  filler,
  fragment,
  icmp,
  icmpv6,
  ipv4,
  ipv6,
  mac,
  routing,
  SYN_OPTIONS,
  tcp,
  TPID_8021AD,
  TPID_8021Q,
  TPID_QINQ_OLD,
  udp,
} from '../lib/frames.js';
import type { Pools } from './generate.js';
import { REAL_DIR } from '../lib/captures.js';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface Frame {
  readonly data: Buffer;
  readonly wireLen: number;
}

/** At most this many frames from one capture: the big ones repeat themselves. */
const PER_CAPTURE = 300;
/**
 * Captured bytes kept per frame (the wire length stays): every header a filter can reach
 * fits, and tcpdump has less to copy back per expression.
 */
const MAX_CAPTURED = 1600;

/** The Ethernet frames of a capture (other link types are left out), up to `limit`; a damaged tail is ignored. */
async function ethernetFrames(path: string, limit = PER_CAPTURE): Promise<Frame[]> {
  const out: Frame[] = [];
  const reader = await CaptureReader.open(path);
  try {
    while (out.length < limit && (await reader.read((buf, off, capLen, origLen, _s, _n, linkType) => {
      if (linkType === 1 && out.length < limit) out.push({ data: Buffer.from(buf.subarray(off, off + Math.min(capLen, MAX_CAPTURED))), wireLen: Math.max(origLen, capLen) });
    })));
  } catch {
    // A truncated or corrupt capture: the frames before the damage are enough.
  } finally {
    await reader.close();
  }
  return out;
}

/** The inner frames `mirrorcap decap` writes for a capture (none if it holds no VXLAN to the port). */
async function decapsulated(path: string, port: number, dir: string): Promise<Frame[]> {
  const config = resolveConfig(new Map([['out', { value: dir, origin: 'test' }]]), {}, { 'log-level': 'silent' });
  const result = await decap(path, port, config, createLogger('silent'));
  const frames: Frame[] = [];
  for (const s of result.sessions) {
    for (const f of (await readdir(join(dir, s.name))).filter((n) => n.endsWith('.pcap')).sort()) frames.push(...(await ethernetFrames(join(dir, s.name, f))));
  }
  return frames;
}

const whole = (data: Buffer): Frame => ({ data, wireLen: data.length });

/** Frames built for the corners: tags, fragments, extension headers, options, short and cut frames, LLC. */
export function edgeFrames(): Frame[] {
  const web = (o: { sport?: number; dport?: number; flags?: number } = {}): Buffer => tcp({ sport: o.sport ?? 40000, dport: o.dport ?? 80, flags: o.flags ?? 0x018 }, filler(24));
  const v4 = (proto: number, l4: Buffer, o: Parameters<typeof ipv4>[2] = {}): Buffer => ipv4(proto, l4, { src: '10.0.0.1', dst: '192.168.1.10', ...o });
  const v6 = (nh: number, l4: Buffer, dst = '2001:db8::2'): Buffer => ipv6(nh, l4, { src: '2001:db8::1', dst });
  const frames = [
    // VLAN: QinQ with each outer TPID, three tags, ids 0 and 4095, priority bits set.
    ether(0x0800, v4(6, web()), { tags: [[TPID_8021AD, 100], [TPID_8021Q, 200]] }),
    ether(0x0800, v4(17, udp(5353, 53, filler(20))), { tags: [[TPID_QINQ_OLD, 300], [TPID_8021Q, 1]] }),
    ether(0x86dd, v6(6, web({ dport: 443 })), { tags: [[TPID_8021Q, 0]] }),
    ether(0x0800, v4(1, icmp(8, 0, 1, filler(16))), { tags: [[TPID_8021Q, 4095]] }),
    ether(0x0800, v4(6, web()), { tags: [[TPID_8021Q, 0xe064]] }),
    ether(0x0806, arp(1, '00:11:22:33:44:55', '10.0.0.1', '00:00:00:00:00:00', '10.0.0.2'), { tags: [[TPID_8021Q, 100]] }),
    ether(0x0800, v4(6, web()), { tags: [[TPID_8021AD, 1], [TPID_8021Q, 2], [TPID_8021Q, 3]] }),
    ether(0x8100, Buffer.from([0x00, 0x64, 0x08, 0x00])),
    // IPv6 fragments (first, not first, atomic) and extension headers before the transport.
    ether(0x86dd, v6(44, Buffer.concat([fragment(6, 0, true, 7), web()]))),
    ether(0x86dd, v6(44, Buffer.concat([fragment(6, 1448, false, 7), filler(40, 3)]))),
    ether(0x86dd, v6(44, Buffer.concat([fragment(17, 0, false, 9), udp(1000, 53, filler(12))]))),
    ether(0x86dd, v6(0, Buffer.concat([extOpts(6, Buffer.from('05020000', 'hex')), web()]))),
    ether(0x86dd, v6(43, Buffer.concat([routing(17, 4, 1, ['2001:db8::9']), udp(1000, 53, filler(12))]))),
    ether(0x86dd, v6(60, Buffer.concat([extOpts(58, Buffer.alloc(4)), icmpv6(128, 0, filler(8))]))),
    ether(0x86dd, v6(0, Buffer.concat([extOpts(44, Buffer.alloc(4)), fragment(6, 0, true, 5), web()]))),
    ether(0x86dd, v6(58, icmpv6(135, 0, filler(20)), 'ff02::1:ff00:2'), { dst: '33:33:ff:00:00:02' }),
    ether(0x86dd, v6(51, Buffer.concat([ah(6, 0x100, 1), web()]))),
    ether(0x86dd, v6(50, esp(0x200, 1, 32))),
    ether(0x86dd, v6(132, Buffer.concat([Buffer.from('13881388', 'hex'), filler(12)]))),
    // IPv4 options (the transport header moves), fragments, AH, ESP, other protocols.
    ether(0x0800, v4(6, web({ dport: 443 }), { options: Buffer.from('01010101', 'hex') })),
    ether(0x0800, v4(17, udp(53, 5353, filler(20)), { options: Buffer.from('9404000001010101010101010000', 'hex') })),
    ether(0x0800, v4(6, web(), { mf: true, id: 77 })),
    ether(0x0800, v4(6, filler(40, 9), { fragOffset: 1480, id: 77 })),
    ether(0x0800, v4(17, filler(40, 5), { fragOffset: 8, mf: true, id: 78 })),
    ether(0x0800, v4(6, tcp({ dport: 22, options: SYN_OPTIONS, flags: 0x002 }), { df: true })),
    ether(0x0800, v4(6, tcp({ dport: 22, flags: 0x012 }))),
    ether(0x0800, v4(51, Buffer.concat([ah(6, 0x100, 1), web()]))),
    ether(0x0800, v4(50, esp(0x300, 2, 24))),
    ether(0x0800, v4(132, Buffer.concat([Buffer.from('13881f90', 'hex'), filler(12)]))),
    ether(0x0800, v4(2, Buffer.from('1600fa04e00000fb', 'hex'), { dst: '224.0.0.251' }), { dst: '01:00:5e:00:00:fb' }),
    ether(0x0800, v4(103, filler(20)), { dst: '01:00:5e:00:00:0d' }),
    ether(0x0800, v4(112, filler(20), { dst: '224.0.0.18' }), { dst: '01:00:5e:00:00:12' }),
    ether(0x0800, v4(47, filler(24))),
    ether(0x0800, v4(17, udp(68, 67, filler(30)), { src: '0.0.0.0', dst: '255.255.255.255' }), { dst: 'ff:ff:ff:ff:ff:ff' }),
    ether(0x0800, v4(1, icmp(0, 0, 1, filler(16)))),
    ether(0x0800, v4(1, icmp(3, 3, 0, v4(17, udp(1000, 53, filler(4)))))),
    // Version nibble not what the EtherType says; header length below 20.
    ether(0x0800, v4(6, web(), { version: 6 })),
    ether(0x86dd, v6(6, web()).fill(0x45, 0, 1)),
    ether(0x0800, v4(6, web(), { ihl: 3 })),
    // ARP and RARP; 802.3 frames with LLC (STP, SNAP/IPX, IPX, ISO, IP SAP).
    ether(0x0806, arp(2, '00:11:22:33:44:55', '192.168.1.10', '66:77:88:99:aa:bb', '10.0.0.1'), { dst: '66:77:88:99:aa:bb' }),
    ether(0x8035, arp(3, '00:11:22:33:44:55', '0.0.0.0', '00:11:22:33:44:55', '10.0.0.9')),
    ether(0x0026, Buffer.concat([Buffer.from('424203', 'hex'), filler(35)]), { dst: '01:80:c2:00:00:00' }),
    ether(0x0030, Buffer.concat([Buffer.from('aaaa0300000081370000', 'hex'), filler(38)])),
    ether(0x0030, Buffer.concat([Buffer.from('e0e003ffff', 'hex'), filler(43)])),
    ether(0x0030, Buffer.concat([Buffer.from('ffff', 'hex'), filler(46)])),
    ether(0x0030, Buffer.concat([Buffer.from('fefe03', 'hex'), filler(45)])),
    ether(0x0030, Buffer.concat([Buffer.from('060603', 'hex'), filler(45)])),
    ether(0x05dc, filler(50)),
    ether(0x05dd, filler(50)),
    ether(0x809b, filler(50)),
    // Short frames.
    Buffer.alloc(0),
    Buffer.from([0xff]),
    Buffer.concat([mac('ff:ff:ff:ff:ff:ff'), mac('00:11:22:33:44:55')]),
    Buffer.concat([mac('01:00:5e:00:00:01'), mac('00:11:22:33:44:55'), Buffer.from([0x08])]),
    ether(0x0800, Buffer.alloc(0)),
    ether(0x0800, Buffer.from([0x45, 0x00])),
    ether(0x0800, v4(6, Buffer.alloc(0))),
    ether(0x0800, v4(6, Buffer.from([0x9c, 0x40]))),
    ether(0x86dd, v6(6, Buffer.alloc(0))),
  ];
  const out = frames.map(whole);
  // The same frames cut short by a snaplen: the wire length stays.
  for (const f of frames) for (const cut of [14, 23, 30, 35, 37, 54, 56]) if (f.length > cut) out.push({ data: f.subarray(0, cut), wireLen: f.length });
  return out;
}

/** Raw-IP packets: the untagged IP packets of the Ethernet corpus, and some broken ones. */
function rawPackets(frames: readonly Frame[]): Frame[] {
  const out: Frame[] = [];
  for (const f of frames) {
    if (f.data.length < 14) continue;
    const type = f.data.readUInt16BE(12);
    if (type === 0x0800 || type === 0x86dd) out.push({ data: f.data.subarray(14), wireLen: f.wireLen - 14 });
  }
  for (const b of ['', '45', '60', '00', 'f0', '4500001c']) out.push(whole(Buffer.from(b, 'hex')));
  return out;
}

export interface Corpus {
  readonly ethernet: Frame[];
  readonly raw: Frame[];
  /** Where the frames came from, for the test's log. */
  readonly sources: string[];
}

export async function buildCorpus(tmp: string): Promise<Corpus> {
  const sources: string[] = [];
  const ethernet: Frame[] = [];
  const add = (what: string, frames: Frame[]): void => {
    if (frames.length === 0) return;
    ethernet.push(...frames);
    sources.push(`${what}: ${frames.length}`);
  };
  for (const f of (await readdir(join(ROOT, 'pcaps'))).filter((n) => n.endsWith('.pcap')).sort()) {
    add(`pcaps/${f}`, await ethernetFrames(join(ROOT, 'pcaps', f)));
    add(`pcaps/${f} (inner)`, await decapsulated(join(ROOT, 'pcaps', f), 4789, join(tmp, `fixture-${f}`)));
  }
  if (existsSync(REAL_DIR)) {
    for (const f of (await readdir(REAL_DIR)).filter((n) => /\.pcap(ng)?$/.test(n)).sort()) {
      add(`real/${f}`, await ethernetFrames(join(REAL_DIR, f)));
      // VXLAN is on 4789, except in the one capture named for the Linux default port.
      const port = f.includes('8472') ? 8472 : 4789;
      add(`real/${f} (inner)`, await decapsulated(join(REAL_DIR, f), port, join(tmp, `real-${f}`)));
    }
  }
  add('hand-built', edgeFrames());
  return { ethernet, raw: rawPackets(ethernet), sources };
}

/** Addresses, ports, MACs and VLAN ids seen in the frames (a bounded sample), for the generator. */
export function poolsOf(frames: readonly Frame[]): Pools {
  const d = new Decoder();
  const ipv4 = new Set(['10.0.0.1', '192.168.1.10', '224.0.0.251', '255.255.255.255', '0.0.0.0']);
  const ipv6 = new Set(['2001:db8::1', 'ff02::1', '::', 'fe80::1']);
  const macs = new Set(['ff:ff:ff:ff:ff:ff', '00:11:22:33:44:55', '01:00:5e:00:00:fb']);
  const ports = new Set([0, 22, 53, 80, 443, 5353, 65535]);
  const vlans = new Set([0, 1, 100, 200, 300, 4095]);
  for (const f of frames) {
    d.decode(f.data, 0, f.data.length);
    if (f.data.length >= 12) macs.add(formatMac(f.data, 0)).add(formatMac(f.data, 6));
    for (let i = 0; i < d.vlanCount; i++) vlans.add(d.vlanId(i));
    if (d.addrLen === 4) ipv4.add(formatIpv4(f.data, d.srcAddrOff)).add(formatIpv4(f.data, d.dstAddrOff));
    if (d.addrLen === 16) {
      for (const off of [d.srcAddrOff, d.dstAddrOff]) {
        const a = formatIpv6(f.data, off);
        if (!a.includes('.')) ipv6.add(a);
      }
    }
    if (d.l4 === L4_TCP || d.l4 === L4_UDP) ports.add(d.srcPort).add(d.dstPort);
  }
  const sample = <T>(s: Set<T>, n: number): T[] => [...s].filter((_, i) => i < n || i % Math.ceil(s.size / n) === 0);
  return { ipv4: sample(ipv4, 40), ipv6: sample(ipv6, 20), macs: sample(macs, 20), ports: sample(ports, 40), vlans: [...vlans] };
}
