/** The JSON of /api/sessions and /api/files: built when asked, never on the packet path. */
import type { Catalog, FinishedFile } from '../capture/catalog.js';
import { PART_SUFFIX } from '../capture/naming.js';
import { L3_NAMES, L4_NAMES, LAYER_NAMES } from '../decode/packet.js';
import { DROP_REASONS, SESSION_DROPS } from '../drops.js';
import type { Session } from '../session/session.js';

const TOP_TALKERS = 10;

export function sessionsJson(sessions: readonly Session[], catalog: Catalog): unknown {
  return sessions.map((s) => {
    const cur = s.writer.current;
    const dropped: Record<string, number> = {};
    for (const r of SESSION_DROPS) dropped[DROP_REASONS[r]!] = s.drops[r]!;
    return {
      name: s.name,
      vni: s.vni,
      source: s.config.source,
      packets: s.packets,
      bytes: s.bytes,
      packetsPerSecond: s.packetsPerSecond,
      bitsPerSecond: s.bitsPerSecond,
      writtenPackets: s.writer.writtenPackets,
      writtenBytes: s.writer.writtenBytes,
      dropped,
      writeErrors: Object.fromEntries(s.writeErrors),
      bufferedBytes: s.writer.heldBytes,
      currentFile: cur === null ? null : { path: cur.path + PART_SUFFIX, bytes: cur.bytes, packets: cur.packets, first: isoNs(cur.firstSec, cur.firstNsec) },
      finishedFiles: catalog.filesOf(s.name).length,
      truncatedPackets: s.truncated,
      receiveTruncatedPackets: s.receiveTruncated,
      protocols: protocolsJson(s.protocols),
      decodeErrors: Object.fromEntries([...s.decodeErrors].flatMap((n, layer) => (n > 0 ? [[LAYER_NAMES[layer]!, n]] : []))),
      topTalkers: s.talkers.top(TOP_TALKERS),
    };
  });
}

export function filesJson(catalog: Catalog): unknown {
  return catalog.all().map((f: FinishedFile) => ({
    session: f.session,
    path: f.path,
    bytes: f.bytes,
    packets: f.packets,
    first: f.first && isoNs(f.first[0], f.first[1]),
    last: f.last && isoNs(f.last[0], f.last[1]),
  }));
}

/** {ipv4: {tcp: n, udp: n, ...}, ipv6: {...}, ...}, non-zero entries only. */
function protocolsJson(counts: Float64Array): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  counts.forEach((n, i) => {
    if (n === 0) return;
    const l3 = L3_NAMES[Math.floor(i / L4_NAMES.length)]!;
    (out[l3] ??= {})[L4_NAMES[i % L4_NAMES.length]!] = n;
  });
  return out;
}

function isoNs(sec: number, nsec: number): string {
  return `${new Date(sec * 1000).toISOString().slice(0, 19)}.${String(nsec).padStart(9, '0')}Z`;
}
