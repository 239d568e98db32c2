/**
 * The packet ring source, `--source afpacket:<iface>`: an AF_PACKET TPACKET_V3 ring mapped
 * into memory (PacketRing in native/mirrorcap_native.cc). The kernel filters (classic BPF,
 * compiled by our filter module from `udp dst port <port> or ...` (every --listen port, and
 * --geneve's) or --bpf), stamps each frame
 * (nanoseconds) and packs frames into blocks; a block is handed over when full or after
 * RETIRE_MS. JS then reads the frames where they lie: no syscall and no copy per frame.
 *
 *   interface ──BPF──▶ ring blocks (mmap) ──one call per batch──▶ OuterParser ──▶ sink(batch)
 *                                   ▲ block handed back once its frames went through the sink
 *
 * The batch's slab is the ring itself: each slot points at the VXLAN (or GENEVE) payload inside
 * a frame. A UDP socket stays bound on each port, never read, so the kernel answers no datagram
 * with ICMP port unreachable.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, type Endpoint } from '../config.js';
import { compileFilter, FilterError, LINKTYPE_ETHERNET, LINKTYPE_RAW, type LinkType } from '../filter/index.js';
import { loadNative, numericHost, RING_COUNTER_COUNT, RING_DROPS, RING_ERRORS, RING_TRUNCATED, type NativeBinding, type NativePacketRing, type NativeReceiver } from '../native/addon.js';
import { codedError, ErrorCode } from '../errors.js';
import { Batch } from './batch.js';
import { interfaceIsDown } from './libpcap.js';
import { OuterParser, tunnelPortsFilter, type TunnelPorts } from './outer.js';
import { countBatch, newBatchSizeCounts, type BatchSink, type Source, type SourceStats } from './source.js';

/**
 * 1 MiB blocks: about 5,000 small frames or 115 jumbo ones per block. Each block handed over
 * is a wake-up of the process, and a wake-up costs ~100 µs of CPU on a VM (the scheduler's
 * and the hypervisor's work, more than the JS that reads the block): with 256 KiB blocks and
 * RETIRE_MS 50, 64-byte frames at 50k pps woke the appliance 40 times a second, and this
 * and RETIRE_MS 100 took its CPU per packet down by about 17 % (docs/performance.md).
 */
export const BLOCK_BYTES = 1024 * 1024;
/**
 * A block not yet full is handed over after this long. Files take the kernel's timestamps,
 * so this only bounds how late a quiet link's frames reach the writers (and live streams);
 * tcpdump's is 1 s. It also sets how long the ring bridges a receiver that is not scheduled:
 * a retired block is used up however little it holds, so at low rates the ring holds
 * blockCount x RETIRE_MS of traffic (32 blocks x 100 ms = 3.2 s for the default 32 MiB);
 * 4 ms made that 0.5 s and lost packets on a busy machine.
 */
export const RETIRE_MS = 100;
const BATCH_CAPACITY = 1024;
const MAX_BATCHES_PER_TURN = 16;
/** See native.ts DEFAULT_SATURATED_REST_MS: under disk overload the kernel should drop, not we. */
const SATURATED_REST_MS = 10;
/** drain() and stop() deliver at most this many batches: a full ring of small frames. */
const DRAIN_BATCHES = 4096;

/** /sys/class/net/<iface>/type (ARPHRD_*) to the link type of the frames the ring holds. */
const LINK_BY_ARPHRD: Readonly<Record<number, LinkType>> = {
  1: LINKTYPE_ETHERNET, // ARPHRD_ETHER
  772: LINKTYPE_ETHERNET, // ARPHRD_LOOPBACK: a zeroed Ethernet header
  65534: LINKTYPE_RAW, // ARPHRD_NONE (tun, WireGuard): the IP header first
};

export interface AfPacketSourceOptions {
  readonly iface: string;
  /**
   * Where the never-read UDP sockets bind: each VXLAN address (--listen), and GENEVE's when
   * given; their ports are what the filter and the parser take.
   */
  readonly listen: readonly Endpoint[];
  readonly geneve: Endpoint | null;
  /** The kernel filter in the pcap-filter language; null = `udp dst port <each port>`. */
  readonly bpf: string | null;
  /** Ring size, rounded up to whole blocks (at least two). */
  readonly ringBytes: number;
  /** Said once when a port is already bound by another process (it then answers for us). */
  readonly warn?: (text: string) => void;
  /** Join this PACKET_FANOUT group (flow hash): one ring per worker thread. */
  readonly fanout?: number;
  /** Bind the never-read UDP socket (default true); a worker thread's ring leaves it to the main thread. */
  readonly holdPort?: boolean;
  /** The addon to use; default loadNative(). */
  readonly binding?: NativeBinding;
}

class RingStats implements SourceStats {
  datagrams = 0;
  batches = 0;
  bytes = 0;
  constructor(
    private readonly source: { readonly parser: OuterParser },
    private readonly counters: Float64Array,
    private readonly read: () => void,
  ) {}
  /** Frames the kernel dropped for want of a free block. */
  get kernelDrops(): number {
    this.read();
    return this.counters[RING_DROPS]!;
  }
  get receiveErrors(): number {
    return this.counters[RING_ERRORS]!;
  }
  get receiveTruncated(): number {
    return this.counters[RING_TRUNCATED]!;
  }
  get skipped(): Readonly<Record<string, number>> {
    return this.source.parser.skippedByReason();
  }
}

export class AfPacketSource implements Source {
  readonly kind = 'afpacket';
  readonly recvBuffer = 0;
  readonly stats: RingStats;
  readonly batchSizeCounts = newBatchSizeCounts();
  /** Written by the addon; see RING_*. */
  readonly counters = new Float64Array(RING_COUNTER_COUNT);
  /** Frames that were not VXLAN or GENEVE to our ports, by reason; made anew once the ports are bound (port 0 resolved). */
  parser: OuterParser;
  private readonly binding: NativeBinding;
  private ring: NativePacketRing | undefined;
  /** One per address of opts.listen, then GENEVE's; undefined where another process holds the port. */
  private holders: Array<NativeReceiver | undefined> = [];
  private state: 'idle' | 'starting' | 'receiving' | 'closed' = 'idle';

  constructor(private readonly opts: AfPacketSourceOptions) {
    let binding = opts.binding;
    if (binding === undefined) {
      const load = loadNative();
      if (!load.ok) throw new ConfigError(`--source afpacket:${opts.iface}: ${load.reason}`);
      binding = load.binding;
    }
    this.binding = binding;
    this.parser = new OuterParser(this.ports());
    this.stats = new RingStats(this, this.counters, () => this.ring?.readStats());
  }

  get ready(): boolean {
    return this.state === 'receiving';
  }

  /** The port of the first VXLAN socket held for us (port 0 resolved); 0 when another process holds it. */
  get port(): number {
    return this.holders[0]?.address().port ?? 0;
  }

  /** The ports taken: those bound (port 0 resolved), else as configured. */
  private ports(): TunnelPorts {
    const { listen, geneve } = this.opts;
    const at = (i: number, ep: Endpoint): number => this.holders[i]?.address().port ?? ep.port;
    return { vxlan: listen.map((ep, i) => at(i, ep)), geneve: geneve === null ? 0 : at(listen.length, geneve) };
  }

  async start(sink: BatchSink): Promise<void> {
    if (this.state !== 'idle') throw codedError(ErrorCode.INVALID_STATE, `AfPacketSource.start(): source is ${this.state}`);
    this.state = 'starting';
    const { iface } = this.opts;
    const at = `--source afpacket:${iface}`;
    try {
      const linkType = linkTypeOf(iface, at);
      if (interfaceIsDown(iface)) throw new ConfigError(`${at}: ${iface} is down (ip link set ${iface} up)`);
      if (this.opts.holdPort !== false) {
        for (const ep of [...this.opts.listen, ...(this.opts.geneve === null ? [] : [this.opts.geneve])]) this.holders.push(await holdUdpPort(this.binding, ep.host, ep.port, this.opts.warn));
      }
      if (this.state !== 'starting') return; // stopped meanwhile
      const ports = this.ports();
      this.parser = new OuterParser(ports);
      const filter = kernelFilter(this.opts.bpf ?? tunnelPortsFilter(ports), linkType);
      const blockCount = Math.max(2, Math.ceil(this.opts.ringBytes / BLOCK_BYTES));
      try {
        const fanout = this.opts.fanout === undefined ? {} : { fanout: this.opts.fanout };
        this.ring = new this.binding.PacketRing(iface, { blockBytes: BLOCK_BYTES, blockCount, retireMs: RETIRE_MS, filter, ...fanout });
      } catch (err) {
        throw explainRingError(at, iface, err as NodeJS.ErrnoException);
      }
      this.startReading(this.ring, linkType, sink);
    } catch (err) {
      this.closeHandles();
      if (this.state === 'starting') this.state = 'idle';
      throw err;
    }
    this.state = 'receiving';
  }

  /** Delivers the blocks the kernel has already handed over. */
  drain(): void {
    if (this.state === 'receiving') this.ring?.drainQueued(DRAIN_BATCHES);
  }

  /**
   * Waits for the block being filled to retire (frames that reached the ring belong in the
   * files), delivers it, then closes; idempotent.
   */
  async stop(): Promise<void> {
    if (this.state === 'closed') return;
    const receiving = this.state === 'receiving';
    this.state = 'closed';
    if (receiving) {
      await sleep(2 * RETIRE_MS);
      this.ring?.drainQueued(DRAIN_BATCHES);
      this.ring?.readStats();
    }
    this.closeHandles();
    this.parser.release();
  }

  private startReading(ring: NativePacketRing, linkType: LinkType, sink: BatchSink): void {
    const slab = ring.ring();
    const frames = new Batch(BATCH_CAPACITY, slab);
    const batch = new Batch(BATCH_CAPACITY, slab);
    const parser = this.parser;
    const stats = this.stats;
    const sizes = this.batchSizeCounts;
    ring.start(
      {
        capacity: BATCH_CAPACITY,
        offsets: frames.offsets,
        lengths: frames.lengths,
        wireLengths: frames.wireLengths,
        tsSec: frames.tsSec,
        tsNsec: frames.tsNsec,
        counters: this.counters,
        maxBatchesPerTurn: MAX_BATCHES_PER_TURN,
        saturatedRestMs: SATURATED_REST_MS,
      },
      (count) => {
        batch.count = 0;
        for (let i = 0; i < count; i++) {
          parser.add(batch, slab, frames.offsets[i]!, frames.lengths[i]!, frames.wireLengths[i]!, linkType, frames.tsSec[i]!, frames.tsNsec[i]!);
        }
        if (batch.count === 0) return false;
        countBatch(stats, sizes, batch);
        return sink(batch);
      },
    );
  }

  private closeHandles(): void {
    this.ring?.close();
    this.ring = undefined;
    for (const h of this.holders) h?.close();
    this.holders = [];
  }
}

/**
 * Binds the UDP port and never reads it (the smallest buffer, so what queues there costs
 * nothing): the kernel then answers no datagram with ICMP port unreachable. Undefined when
 * another process holds the port (said once through warn).
 */
export async function holdUdpPort(binding: NativeBinding, host: string, port: number, warn?: (text: string) => void): Promise<NativeReceiver | undefined> {
  const numeric = await numericHost(host);
  try {
    const holder = new binding.Receiver(numeric, port, false);
    holder.setRecvBuffer(1);
    return holder;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    warn?.(`UDP port ${port} is bound by another process; it, not mirrorcap, answers the datagrams`);
    return undefined;
  }
}

/** The frames' link type, from the interface's ARPHRD type. */
function linkTypeOf(iface: string, at: string): LinkType {
  let arphrd = NaN;
  try {
    // A name with a slash would reach outside /sys/class/net: no interface has one.
    if (!iface.includes('/')) arphrd = Number.parseInt(readFileSync(`/sys/class/net/${iface}/type`, 'utf8'), 10);
  } catch {
    // No such interface: said below.
  }
  if (Number.isNaN(arphrd)) throw new ConfigError(`${at}: there is no interface "${iface}"; \`mirrorcap interfaces\` lists them`);
  const linkType = LINK_BY_ARPHRD[arphrd];
  if (linkType === undefined) throw new ConfigError(`${at}: ${iface} has link type ${arphrd} (ARPHRD); mirrorcap reads Ethernet, loopback and raw IP interfaces`);
  return linkType;
}

/** The filter as the kernel takes it: code, jt, jf, k per instruction. */
export function kernelFilter(text: string, linkType: LinkType): Uint32Array {
  let program;
  try {
    program = compileFilter(text, linkType).program;
  } catch (err) {
    if (err instanceof FilterError) throw new ConfigError(`--bpf "${text}": ${err.message}`);
    throw err;
  }
  const words = new Uint32Array(program.length * 4);
  program.forEach((insn, i) => words.set([insn.code, insn.jt, insn.jf, insn.k >>> 0], i * 4));
  return words;
}

function explainRingError(at: string, iface: string, err: NodeJS.ErrnoException): Error {
  if (err.code === 'ENODEV' || err.code === 'ENXIO') return new ConfigError(`${at}: there is no interface "${iface}"; \`mirrorcap interfaces\` lists them`);
  if (err.code === 'EPERM' || err.code === 'EACCES') {
    return new ConfigError(`${at}: not allowed to open a packet socket (${err.message}); run as root or grant CAP_NET_RAW (setcap cap_net_raw+ep $(command -v node), or AmbientCapabilities=CAP_NET_RAW in systemd)`);
  }
  if (err.code === 'ENOMEM') return new ConfigError(`${at}: the kernel refused a ring of that size (${err.message}); lower --recv-buffer`);
  return new ConfigError(`${at}: could not open a packet ring on ${iface}: ${err.message}`);
}
