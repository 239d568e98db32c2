/**
 * The interface source, `--source pcap:<iface>`: libpcap through the optional `cap` module,
 * for hosts where another process owns the VXLAN port or the traffic only passes by. A BPF
 * filter keeps the kernel handing us only VXLAN; each packet's outer headers are parsed
 * (OuterParser) and the datagram joins a batch, delivered on setImmediate like dgram's.
 * cap gives no capture timestamp, so receive times come from WallClock.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ConfigError } from '../config.js';
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_NULL, LINKTYPE_RAW } from '../pcap/linktype.js';
import { BatchingSource } from './batcher.js';
import { WallClock } from './clock.js';
import { catchStderr } from '../native/addon.js';
import { OuterParser, tunnelPortsFilter, type TunnelPorts } from './outer.js';
import type { BatchSink, Source, SourceStats } from './source.js';

interface CapHandle {
  open(device: string, filter: string, bufferSize: number, buffer: Buffer): string;
  on(event: 'packet', listener: (nbytes: number, truncated: boolean) => void): void;
  close(): void;
}

export interface CapModule {
  Cap: { new (): CapHandle; deviceList(): Array<{ name: string; description?: string; addresses: Array<{ addr: string }>; flags?: string }> };
}

export type CapLoad = { readonly ok: true; readonly cap: CapModule } | { readonly ok: false; readonly reason: string };

const require = createRequire(import.meta.url);

export function loadCap(): CapLoad {
  try {
    return { ok: true, cap: require('cap') as CapModule };
  } catch (err) {
    return {
      ok: false,
      reason: `the optional "cap" module (libpcap bindings) is not installed: ${(err as Error).message.split('\n')[0]}; install libpcap-dev, then run \`npm install cap\``,
    };
  }
}

/** cap's names for link types, as pcap_datalink() numbers. */
const LINK_TYPES: Readonly<Record<string, number>> = {
  ETHERNET: LINKTYPE_ETHERNET,
  LINKTYPE_LINUX_SLL: LINKTYPE_LINUX_SLL,
  RAW: LINKTYPE_RAW,
  NULL: LINKTYPE_NULL,
};

export interface LibpcapSourceOptions {
  readonly iface: string;
  /** The UDP ports decapsulated (VXLAN's, GENEVE's); datagrams to others are counted and skipped. */
  readonly ports: TunnelPorts;
  /** BPF filter; default `udp dst port <each of ports>` (tunnelPortsFilter). */
  readonly bpf: string | null;
  /** libpcap's kernel buffer. */
  readonly bufferBytes: number;
  /** What libpcap printed on stderr while opening the interface (it opened all the same). */
  readonly warn?: (text: string) => void;
}

const SLAB_BYTES = 4 * 1024 * 1024;
const BATCH_CAPACITY = 1024;
const SNAPLEN = 65535;

export class LibpcapSource extends BatchingSource implements Source {
  readonly kind = 'pcap';
  readonly recvBuffer = 0;
  readonly port = 0;
  ready = false;
  /** Packets on the interface that were not VXLAN to our port (by reason), from OuterParser. */
  readonly parser: OuterParser;
  private handle: CapHandle | null = null;
  private readonly packet = Buffer.alloc(SNAPLEN);
  private linkType = LINKTYPE_ETHERNET;
  private readonly clock = new WallClock();

  constructor(
    private readonly opts: LibpcapSourceOptions,
    private readonly cap: CapModule,
  ) {
    super(BATCH_CAPACITY, SLAB_BYTES);
    this.parser = new OuterParser(opts.ports);
  }

  override get stats(): SourceStats {
    return { ...this.batcher.stats, skipped: this.parser.skippedByReason() };
  }

  async start(sink: BatchSink): Promise<void> {
    this.batcher.start(sink);
    const { iface } = this.opts;
    // Asked first: opening an unknown interface makes cap print libpcap's SIOCGIFADDR
    // warning on stderr before it fails (and catchStderr needs the native addon).
    if (!this.cap.Cap.deviceList().some((d) => d.name === iface)) throw noSuchInterface(iface);
    // Asked ourselves: whether libpcap refuses a down interface depends on the kernel
    // (bind's ENETDOWN), and one that opens would capture nothing without saying so.
    if (interfaceIsDown(iface)) throw new ConfigError(`--source pcap:${iface}: libpcap could not open ${iface}: That device is not up (ip link set ${iface} up)`);
    const handle = new this.cap.Cap();
    const filter = this.opts.bpf ?? tunnelPortsFilter(this.opts.ports);
    let link: string;
    // cap prints libpcap's warnings itself ("eth1: no IPv4 address assigned - This may not
    // actually work"): kept off our stderr, logged when the open succeeds, dropped when
    // our own error says what went wrong.
    let printed = '';
    try {
      link = catchStderr(
        () => handle.open(iface, filter, this.opts.bufferBytes, this.packet),
        (text) => (printed = text.trim()),
      );
    } catch (err) {
      throw explainOpenError(iface, filter, (err as Error).message);
    }
    if (printed !== '') this.opts.warn?.(printed);
    const linkType = LINK_TYPES[link];
    if (linkType === undefined) {
      handle.close();
      throw new ConfigError(`--source pcap:${this.opts.iface}: link type ${link} is not one mirrorcap reads (Ethernet, Linux cooked, raw IP, BSD loopback)`);
    }
    this.linkType = linkType;
    handle.on('packet', this.onPacket);
    this.handle = handle;
    this.ready = true;
  }

  async stop(): Promise<void> {
    const handle = this.handle;
    if (handle === null) return;
    this.handle = null;
    this.ready = false;
    handle.close();
    this.batcher.flush();
    this.parser.release();
  }

  private readonly onPacket = (nbytes: number): void => {
    const batcher = this.batcher;
    const b = batcher.batch;
    batcher.room(nbytes);
    // The parser points the slot into the slab, so the packet is copied there first.
    this.packet.copy(b.slab, batcher.used, 0, nbytes);
    this.clock.sample();
    if (this.parser.add(b, b.slab, batcher.used, nbytes, nbytes, this.linkType, this.clock.sec, this.clock.nsec)) batcher.commit(nbytes);
  };
}

/** IFF_UP from sysfs; an interface sysfs does not show is left for libpcap to judge. */
export function interfaceIsDown(iface: string): boolean {
  if (iface.includes('/')) return false;
  try {
    return (Number.parseInt(readFileSync(`/sys/class/net/${iface}/flags`, 'utf8'), 16) & 0x1) === 0;
  } catch {
    return false;
  }
}

function noSuchInterface(iface: string): ConfigError {
  return new ConfigError(`--source pcap:${iface}: there is no interface "${iface}"; \`mirrorcap interfaces\` lists the ones that can be opened`);
}

/** libpcap's open errors, turned into what the operator should do. */
function explainOpenError(iface: string, filter: string, message: string): ConfigError {
  const at = `--source pcap:${iface}`;
  if (/no such device|doesn't exist|not exist/i.test(message)) return noSuchInterface(iface);
  if (/permission|not permitted|EPERM|EACCES/i.test(message)) {
    return new ConfigError(`${at}: not allowed to capture on ${iface} (${message}); run as root or grant CAP_NET_RAW (setcap cap_net_raw+ep $(command -v node), or AmbientCapabilities=CAP_NET_RAW in systemd)`);
  }
  if (/syntax|filter|bpf|parse/i.test(message)) return new ConfigError(`--bpf "${filter}": libpcap refused the filter: ${message}`);
  return new ConfigError(`${at}: libpcap could not open ${iface}: ${message}`);
}
