/**
 * Reading capture files with independent tools: every frame as tshark sees it, and capinfos'
 * summary. Tests compare what our code wrote or read against these, never against our reader.
 */
import { run, tool } from './tools.js';

/** One record of a capture file, as tshark reads it or (test/lib/captures.ts) as our reader delivers it. */
export interface Frame {
  /** "seconds.nanoseconds" as tshark prints frame.time_epoch; '' where tshark prints none (a simple packet block). */
  ts: string;
  capLen: number;
  origLen: number;
  /** The pcapng interface within its section (frame.interface_id); 0 for classic pcap. */
  ifIndex: number;
  /** LINKTYPE_* number; -1 where tshark's encapsulation has no mapping in WTAP_ENCAP_TO_LINKTYPE. */
  linkType: number;
  data: Buffer;
}

/** Whether two frames agree in every field and every byte. */
export function sameFrame(a: Frame, b: Frame): boolean {
  return a.ts === b.ts && a.capLen === b.capLen && a.origLen === b.origLen && a.ifIndex === b.ifIndex && a.linkType === b.linkType && a.data.equals(b.data);
}

/** Whether two lists hold the same frames in the same order. */
export function sameFrames(a: readonly Frame[], b: readonly Frame[]): boolean {
  return a.length === b.length && a.every((f, i) => sameFrame(f, b[i]!));
}

/** A timestamp as Frame.ts spells it. */
export function tsString(sec: number, nsec: number): string {
  return `${sec}.${String(nsec).padStart(9, '0')}`;
}

/** Wireshark's encapsulation numbers (frame.encap_type) for the link types the tests use. */
const WTAP_ENCAP_TO_LINKTYPE: Record<number, number> = { 1: 1, 7: 101, 129: 228, 130: 229, 25: 113, 210: 276, 15: 0, 174: 108 };

/**
 * Every frame of a capture as tshark sees it, from one `tshark -T json -x` run with every
 * dissector off (only the frame fields and bytes are needed). Rejects if tshark reports an
 * error, unless `allowCutShort` and the file is only cut short or damaged: then the frames
 * tshark printed before the damage.
 */
export async function tsharkFrames(path: string, allowCutShort = false): Promise<Frame[]> {
  const r = await run('tshark', ['-r', path, '-T', 'json', '-x', '-j', 'frame', '--disable-protocol', 'ALL']);
  if (r.code !== 0 && !(allowCutShort && /cut short|damaged or corrupt/.test(r.stderr))) {
    throw new Error(`tshark -r ${path} exited ${r.code}: ${r.stderr}`);
  }
  // A file cut short still ends its JSON array properly; an empty capture prints nothing.
  const packets = (r.stdout.trim() === '' ? [] : JSON.parse(r.stdout)) as { _source: { layers: { frame_raw: [string]; frame: Record<string, string> } } }[];
  return packets.map(({ _source: { layers } }) => {
    const f = layers.frame;
    return {
      ts: f['frame.time_epoch'] ?? '',
      capLen: Number(f['frame.cap_len']),
      origLen: Number(f['frame.len']),
      ifIndex: Number(f['frame.interface_id'] ?? 0),
      linkType: WTAP_ENCAP_TO_LINKTYPE[Number(f['frame.encap_type'])] ?? -1,
      data: Buffer.from(layers.frame_raw[0], 'hex'),
    };
  });
}

export interface CapinfosSummary {
  packets: number;
  encapsulation: string;
  /** "nsecpcap" is classic pcap with nanosecond timestamps. */
  fileType: string;
  snaplen: number;
}

/** capinfos' view of a file: packet count, encapsulation, file type, snaplen. Rejects on a file it cannot read. */
export async function capinfos(path: string): Promise<CapinfosSummary> {
  // -M: exact numbers, not "1 k".
  const out = await tool('capinfos', ['-M', '-c', '-E', '-t', '-l', path]);
  const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(out)?.[1]?.trim() ?? '';
  return {
    packets: Number(field('Number of packets')),
    encapsulation: field('File encapsulation'),
    fileType: field('File type'),
    snaplen: Number(/Packet size limit:\s*file hdr:\s*(\d+)/.exec(out)?.[1] ?? NaN),
  };
}

export interface NgStatistics {
  received: number;
  dropped: number;
  accepted: number;
  delivered: number;
}

/** The interface statistics blocks of a pcapng file, as Wireshark's own file-format dissector reads them. */
export async function pcapngStatistics(path: string): Promise<NgStatistics[]> {
  const fields = ['received', 'dropped', 'accepted_by_filter', 'delivered_to_user'].flatMap((f) => ['-e', `pcapng.options.option.data.interface.${f}`]);
  const out = await tool('tshark', ['-X', 'read_format:MIME Files Format', '-r', path, '-T', 'fields', '-E', 'separator=,', ...fields]);
  return out
    .split('\n')
    .filter((l) => /\d/.test(l))
    .map((l) => {
      const [received, dropped, accepted, delivered] = l.split(',').map(Number);
      return { received: received!, dropped: dropped!, accepted: accepted!, delivered: delivered! };
    });
}

/** capinfos -I's interface lines (Name, Description, Filter string, Time precision, ...), one record per interface, file after file. */
export async function capinfosInterfaces(...paths: string[]): Promise<Array<Record<string, string>>> {
  const out = await tool('capinfos', ['-I', ...paths]);
  const ifaces: Array<Record<string, string>> = [];
  for (const line of out.split('\n')) {
    if (/^Interface #\d+ info:/.test(line)) ifaces.push({});
    const m = /^\s+([A-Za-z][A-Za-z -]*?) = (.*)$/.exec(line);
    if (m && ifaces.length > 0) ifaces[ifaces.length - 1]![m[1]!] = m[2]!;
  }
  return ifaces;
}
