/**
 * --source: which sources the appliance receives with. `auto` takes the native recvmmsg
 * source when the addon loaded and falls back to node:dgram, saying why once; `pcap:<iface>`
 * captures on an interface through libpcap (the optional cap module), `afpacket:<iface>`
 * through a memory-mapped ring.
 *
 * A socket source binds one address: each --listen address (VXLAN) gets its own, and --geneve
 * one more. An interface source sees every port at once: one source takes the datagrams to
 * every --listen port and to --geneve's, each marked VXLAN or GENEVE by its port (outer.ts).
 */
import { formatEndpoint, ConfigError, type Config, type Endpoint } from '../config.js';
import type { Logger } from '../log.js';
import { AfPacketSource, RETIRE_MS } from './afpacket.js';
import { DgramSource } from './dgram.js';
import { LibpcapSource, loadCap } from './libpcap.js';
import { loadNative } from '../native/addon.js';
import { DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, MAX_RING_BYTES, MAX_SLAB_BYTES, NativeSource, slotBytesFor } from './native.js';
import type { Source } from './source.js';
import { WorkerSource } from './workers.js';

/**
 * One source and what it delivers: `geneve` when every datagram is GENEVE (the --geneve
 * socket); otherwise VXLAN, or each slot marked (an interface source).
 */
export interface Listener {
  readonly source: Source;
  readonly geneve: boolean;
  /** What /metrics calls it (label `listener`): the bound address, or the --source. */
  name(): string;
}

/** Every source --listen, --geneve and --source ask for, the VXLAN ones first. */
export function createListeners(config: Config, log: Logger): Listener[] {
  const onInterface = config.source.startsWith('pcap:') || config.source.startsWith('afpacket:');
  if (config.workers > 1) {
    // One --listen address and no --geneve (config.ts says so): the threads share its port.
    const source = workerSource(config, log);
    const ep = config.listen[0]!;
    return [{ source, geneve: false, name: () => (onInterface ? config.source : formatEndpoint({ host: ep.host, port: source.port || ep.port })) }];
  }
  if (onInterface) {
    const source = interfaceSource(config, log);
    return [{ source, geneve: false, name: () => config.source }];
  }
  const make = socketMaker(config, log);
  const socket = (endpoint: Endpoint, geneve: boolean): Listener => {
    const source = make(endpoint);
    // Port 0 asks for any free port: the label says the one bound.
    return { source, geneve, name: () => formatEndpoint({ host: endpoint.host, port: source.port || endpoint.port }) };
  };
  return [...config.listen.map((ep) => socket(ep, false)), ...(config.geneve === null ? [] : [socket(config.geneve, true)])];
}

function interfaceSource(config: Config, log: Logger): Source {
  const listen = config.listen;
  const geneve = config.geneve;
  if (config.source.startsWith('pcap:')) {
    const iface = config.source.slice('pcap:'.length);
    const cap = loadCap();
    if (!cap.ok) throw new ConfigError(`--source ${config.source}: ${cap.reason}`);
    const warn = (text: string): void => log.warn({ event: 'libpcap_warning', iface, text }, `libpcap: ${text}`);
    const ports = { vxlan: listen.map((ep) => ep.port), geneve: geneve?.port ?? 0 };
    return new LibpcapSource({ iface, ports, bpf: config.bpf, bufferBytes: config.recvBuffer, warn }, cap.cap);
  }
  const iface = config.source.slice('afpacket:'.length);
  const warn = (text: string): void => log.warn({ event: 'afpacket_warning', iface, text }, text);
  return new AfPacketSource({ iface, listen, geneve, bpf: config.bpf, ringBytes: config.recvBuffer, warn });
}

/** The socket source kind, chosen once for every address (and the fallback said once). */
function socketMaker(config: Config, log: Logger): (endpoint: Endpoint) => Source {
  const dgram = ({ host, port }: Endpoint): Source => new DgramSource({ host, port, recvBuffer: config.recvBuffer });
  if (config.source === 'dgram') return dgram;
  const load = loadNative();
  if (load.ok) {
    const { binding } = load;
    const snaplen = largestSnaplen(config);
    // Zero-copy (slab-ring.ts): records wait for the disk in the receive slab, whose memory
    // comes out of --max-buffer (the recorder reserves it): half of it, shared by the VXLAN
    // sockets. The GENEVE socket keeps a plain slab: with a ring it woke 2.5x as often at 50k
    // packets/s (6,200-6,800 against 2,550 wake-ups in 10 s; why is not yet understood).
    const geneve = config.geneve;
    const ringBytes = Math.min(MAX_RING_BYTES, Math.floor(config.maxBuffer / 2 / config.listen.length));
    return ({ host, port }) => {
      const ring = geneve !== null && geneve.host === host && geneve.port === port ? {} : { ringBytes };
      return new NativeSource({ host, port, recvBufferBytes: config.recvBuffer, snaplen, binding, ...ring });
    };
  }
  if (config.source === 'native') {
    throw new ConfigError(`--source native: ${load.reason}; install python3, make and g++, then run \`npm ci\` again, or use --source dgram`);
  }
  log.warn({ event: 'native_unavailable', reason: load.reason }, `native source unavailable (${load.reason}); receiving with node:dgram`);
  return dgram;
}

/** The most bytes of frame any session keeps: the receive slots must hold that much whole. */
export function largestSnaplen(config: Config): number {
  return config.sessions.reduce((max, s) => Math.max(max, s.snaplen), config.snaplen);
}

/** --workers N: the receive threads, each with its own socket (native) or ring (afpacket). */
function workerSource(config: Config, log: Logger): Source {
  const { host, port } = config.listen[0]!;
  const load = loadNative();
  if (!load.ok) throw new ConfigError(`--workers ${config.workers}: ${load.reason}; receive threads need the native addon`);
  const afpacket = config.source.startsWith('afpacket:');
  const slotBytes = slotBytesFor(largestSnaplen(config));
  return new WorkerSource({
    workers: config.workers,
    kind: afpacket ? 'afpacket' : 'native',
    host,
    port,
    iface: afpacket ? config.source.slice('afpacket:'.length) : '',
    bpf: config.bpf,
    recvBufferBytes: config.recvBuffer,
    slotBytes,
    // A ring worker packs frames, so a region holds many; a socket's batch is one recvmmsg.
    batchSize: afpacket ? MAX_BATCH_SIZE : Math.max(1, Math.min(DEFAULT_BATCH_SIZE, Math.floor(MAX_SLAB_BYTES / slotBytes))),
    holdMs: afpacket ? RETIRE_MS : 0,
    binding: load.binding,
    log,
  });
}
