/** Reading our output with independent tools: tshark and capinfos. */
import { spawnSync } from 'node:child_process';

export interface TsharkFrame {
  readonly len: number;
  readonly capLen: number;
  /** "seconds.nanoseconds" exactly as tshark prints it. */
  readonly epoch: string;
  readonly raw: Buffer;
}

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** Every frame of a capture as tshark sees it, raw bytes included. Throws if tshark reports an error. */
export function tsharkFrames(path: string): TsharkFrame[] {
  const out = run('tshark', ['-r', path, '-T', 'json', '-x', '-j', 'frame']);
  const packets = JSON.parse(out) as Array<{ _source: { layers: Record<string, unknown> } }>;
  return packets.map(({ _source: { layers } }) => {
    const frame = layers.frame as Record<string, string>;
    const raw = layers.frame_raw as [string, ...unknown[]];
    return {
      len: Number(frame['frame.len']),
      capLen: Number(frame['frame.cap_len']),
      epoch: frame['frame.time_epoch']!,
      raw: Buffer.from(raw[0], 'hex'),
    };
  });
}

/** capinfos' view of a file: packet count, encapsulation, precision, snaplen. Throws on a damaged file. */
export function capinfos(path: string): { packets: number; encapsulation: string; fileType: string; snaplen: number } {
  // -M: exact numbers; file type "nsecpcap" is classic pcap with nanosecond timestamps.
  const out = run('capinfos', ['-M', '-c', '-E', '-t', '-l', path]);
  const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(out)?.[1]?.trim() ?? '';
  return {
    packets: Number(field('Number of packets')),
    encapsulation: field('File encapsulation'),
    fileType: field('File type'),
    snaplen: Number(/Packet size limit:\s*file hdr:\s*(\d+)/.exec(out)?.[1] ?? NaN),
  };
}

export function haveTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}
