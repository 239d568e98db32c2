import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import {
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  LINKTYPE_ETHERNET,
  LINKTYPE_IPV4,
  LINKTYPE_IPV6,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_LOOP,
  LINKTYPE_NULL,
  LINKTYPE_RAW,
  LINK_ETHERNET,
  LINK_NETWORK,
  LINK_TRUNCATED,
  LINK_UNSUPPORTED,
  LinkLayer,
  locateNetworkLayer,
} from '../../src/pcap/linktype.js';
import { readCapture } from '../../src/pcap/reader.js';
import { REAL_DIR, buildPcap, realCaptures } from '../lib/captures.js';
import { tool, withTempDir } from '../lib/tools.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

/** Runs the helper on `bytes` placed at offset 5 of a 0xa5-filled buffer, so offsets must be relative. */
function locate(linkType: number, bytes: Buffer): [number, number, number] {
  const buf = Buffer.alloc(bytes.length + 10, 0xa5);
  bytes.copy(buf, 5);
  const out = new LinkLayer();
  const status = locateNetworkLayer(linkType, buf, 5, bytes.length, out);
  return [status, out.offset, out.etherType];
}

t.test('link-type numbers are the registry values', async (t) => {
  t.same(
    [LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2],
    [0, 1, 101, 108, 113, 228, 229, 276],
  );
});

t.test('where the network layer starts, from fixed bytes', async (t) => {
  const sll = hex('0000 0001 0006 001122334455 0000 86dd');
  const sll2 = hex('0800 0000 00000002 0001 00 06 001122334455 0000');
  const cases: [string, number, Buffer, [number, number, number]][] = [
    ['Ethernet is left to the decoder', LINKTYPE_ETHERNET, hex('ffffffffffff 001122334455 0800'), [LINK_ETHERNET, 0, 0]],
    ['SLL: protocol at 14, L3 at 16', LINKTYPE_LINUX_SLL, sll, [LINK_NETWORK, 16, ETHERTYPE_IPV6]],
    ['SLL short', LINKTYPE_LINUX_SLL, sll.subarray(0, 15), [LINK_TRUNCATED, 0, 0]],
    ['SLL with a non-IP protocol', LINKTYPE_LINUX_SLL, Buffer.concat([sll.subarray(0, 14), hex('0806')]), [LINK_NETWORK, 16, 0x0806]],
    ['SLL2: protocol at 0, L3 at 20', LINKTYPE_LINUX_SLL2, sll2, [LINK_NETWORK, 20, ETHERTYPE_IPV4]],
    ['SLL2 short', LINKTYPE_LINUX_SLL2, sll2.subarray(0, 19), [LINK_TRUNCATED, 0, 0]],
    ['RAW IPv4', LINKTYPE_RAW, hex('45000014'), [LINK_NETWORK, 0, ETHERTYPE_IPV4]],
    ['RAW IPv6', LINKTYPE_RAW, hex('60000000'), [LINK_NETWORK, 0, ETHERTYPE_IPV6]],
    ['RAW with another version', LINKTYPE_RAW, hex('50000000'), [LINK_NETWORK, 0, 0]],
    ['RAW empty', LINKTYPE_RAW, Buffer.alloc(0), [LINK_TRUNCATED, 0, 0]],
    ['IPV4', LINKTYPE_IPV4, hex('45'), [LINK_NETWORK, 0, ETHERTYPE_IPV4]],
    ['IPV6', LINKTYPE_IPV6, hex('60'), [LINK_NETWORK, 0, ETHERTYPE_IPV6]],
    ['IPV6 empty', LINKTYPE_IPV6, Buffer.alloc(0), [LINK_TRUNCATED, 0, 0]],
    ['NULL little-endian AF_INET', LINKTYPE_NULL, hex('02000000 45'), [LINK_NETWORK, 4, ETHERTYPE_IPV4]],
    ['NULL big-endian AF_INET', LINKTYPE_NULL, hex('00000002 45'), [LINK_NETWORK, 4, ETHERTYPE_IPV4]],
    ['NULL BSD AF_INET6', LINKTYPE_NULL, hex('18000000 60'), [LINK_NETWORK, 4, ETHERTYPE_IPV6]],
    ['NULL FreeBSD AF_INET6', LINKTYPE_NULL, hex('1c000000'), [LINK_NETWORK, 4, ETHERTYPE_IPV6]],
    ['NULL macOS AF_INET6 big-endian', LINKTYPE_NULL, hex('0000001e'), [LINK_NETWORK, 4, ETHERTYPE_IPV6]],
    ['NULL Linux AF_INET6', LINKTYPE_NULL, hex('0a000000'), [LINK_NETWORK, 4, ETHERTYPE_IPV6]],
    ['NULL unknown family', LINKTYPE_NULL, hex('07000000'), [LINK_NETWORK, 4, 0]],
    ['NULL short', LINKTYPE_NULL, hex('020000'), [LINK_TRUNCATED, 0, 0]],
    ['LOOP is big-endian', LINKTYPE_LOOP, hex('00000002'), [LINK_NETWORK, 4, ETHERTYPE_IPV4]],
    ['LOOP read little-endian would be wrong', LINKTYPE_LOOP, hex('02000000'), [LINK_NETWORK, 4, 0]],
    ['unknown link type', 147, hex('00000000'), [LINK_UNSUPPORTED, 0, 0]],
  ];
  for (const [name, linkType, bytes, want] of cases) t.same(locate(linkType, bytes), want, name);
});

const real = realCaptures();

t.test('tshark finds the IP header where we say it starts, under every link type', { skip: real.skip }, async (t) => {
  await withTempDir(async (dir) => {
    // Real IPv4 and IPv6 Ethernet frames, re-wrapped under each link-layer header.
    const ethFrames: Buffer[] = [];
    for (const name of ['plain-zeek-icmp-ping.pcap', 'plain-zeek-icmp6-ping.pcap']) {
      await readCapture(join(REAL_DIR, name), (buf, off, capLen) => void ethFrames.push(Buffer.from(buf.subarray(off, off + capLen))));
    }
    const u32 = (v: number, le: boolean): Buffer => {
      const b = Buffer.alloc(4);
      if (le) b.writeUInt32LE(v);
      else b.writeUInt32BE(v);
      return b;
    };
    const wrap: [string, number, (l3: Buffer, etherType: Buffer, v6: boolean) => Buffer][] = [
      ['ethernet', LINKTYPE_ETHERNET, (l3, et) => Buffer.concat([hex('020000000001 020000000002'), et, l3])],
      ['sll', LINKTYPE_LINUX_SLL, (l3, et) => Buffer.concat([hex('0000 0001 0006 020000000001 0000'), et, l3])],
      ['sll2', LINKTYPE_LINUX_SLL2, (l3, et) => Buffer.concat([et, hex('0000 00000003 0001 04 06 020000000001 0000'), l3])],
      ['raw', LINKTYPE_RAW, (l3) => l3],
      ['ipv4-or-ipv6', -1, (l3) => l3],
      ['null-le', LINKTYPE_NULL, (l3, _et, v6) => Buffer.concat([u32(v6 ? 30 : 2, true), l3])],
      ['null-be', LINKTYPE_NULL, (l3, _et, v6) => Buffer.concat([u32(v6 ? 24 : 2, false), l3])],
      ['loop', LINKTYPE_LOOP, (l3, _et, v6) => Buffer.concat([u32(v6 ? 28 : 2, false), l3])],
    ];
    let checked = 0;
    for (const [name, linkType, fn] of wrap) {
      for (const v6 of [false, true]) {
        const frames = ethFrames.filter((f) => f.readUInt16BE(12) === (v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4));
        const lt = linkType === -1 ? (v6 ? LINKTYPE_IPV6 : LINKTYPE_IPV4) : linkType;
        const path = join(dir, `${name}-${v6 ? 6 : 4}.pcap`);
        await writeFile(path, buildPcap({ linkType: lt, records: frames.map((f, i) => ({ sec: i, frac: 0, data: fn(f.subarray(14), f.subarray(12, 14), v6) })) }));
        const packets = JSON.parse(await tool('tshark', ['-r', path, '-T', 'json', '-x'])) as { _source: { layers: Record<string, unknown> } }[];
        const recs: Buffer[] = [];
        await readCapture(path, (buf, off, capLen) => void recs.push(Buffer.from(buf.subarray(off, off + capLen))));
        t.equal(recs.length, packets.length);
        recs.forEach((rec, i) => {
          const out = new LinkLayer();
          const status = locateNetworkLayer(lt, rec, 0, rec.length, out);
          const layers = packets[i]!._source.layers;
          const raw = layers[v6 ? 'ipv6_raw' : 'ip_raw'] as [string, number] | [string, number][] | undefined;
          const tsharkOffset = raw === undefined ? -1 : Array.isArray(raw[0]) ? (raw[0] as [string, number])[1] : (raw as [string, number])[1];
          if (lt === LINKTYPE_ETHERNET) {
            t.equal(status, LINK_ETHERNET);
            t.equal(tsharkOffset, 14, 'tshark sees IP after the 14-byte MAC header');
          } else {
            t.same([status, out.offset, out.etherType], [LINK_NETWORK, tsharkOffset, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4], `${name} v${v6 ? 6 : 4} frame ${i}`);
          }
          checked++;
        });
      }
    }
    t.ok(checked >= 16 * 4, `${checked} frames checked`);
  });
});
