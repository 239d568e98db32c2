/**
 * --source: which source the appliance receives with. `auto` takes the native recvmmsg
 * source when the addon loaded and falls back to node:dgram, saying why once; `pcap:<iface>`
 * captures on an interface through libpcap (the optional cap module).
 */
import { ConfigError, type Config, type Endpoint } from '../config.js';
import type { Logger } from '../log.js';
import { AfPacketSource, RETIRE_MS } from './afpacket.js';
import { DgramSource } from './dgram.js';
import { LibpcapSource, loadCap } from './libpcap.js';
import { loadNative } from '../native/addon.js';
import { DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, MAX_SLAB_BYTES, NativeSource, slotBytesFor } from './native.js';
import type { Source } from './source.js';
import { WorkerSource } from './workers.js';

/** The source for `endpoint`: --listen (VXLAN) by default, or --geneve. */
export function createSource(config: Config, log: Logger, endpoint: Endpoint = config.listen): Source {
  const { host, port } = endpoint;
  const dgram = (): Source => new DgramSource({ host, port, recvBuffer: config.recvBuffer });
  if (config.source === 'dgram') return dgram();
  if (config.source.startsWith('pcap:')) {
    if (endpoint !== config.listen) throw new ConfigError(`--geneve takes a socket source (native or dgram), not --source ${config.source}`);
    const iface = config.source.slice('pcap:'.length);
    const cap = loadCap();
    if (!cap.ok) throw new ConfigError(`--source ${config.source}: ${cap.reason}`);
    const warn = (text: string): void => log.warn({ event: 'libpcap_warning', iface, text }, `libpcap: ${text}`);
    return new LibpcapSource({ iface, port, bpf: config.bpf, bufferBytes: config.recvBuffer, warn }, cap.cap);
  }
  if (config.workers > 1 && endpoint === config.listen) return workerSource(config, log);
  if (config.source.startsWith('afpacket:')) {
    const iface = config.source.slice('afpacket:'.length);
    const warn = (text: string): void => log.warn({ event: 'afpacket_warning', iface, text }, text);
    return new AfPacketSource({ iface, host, port, bpf: config.bpf, ringBytes: config.recvBuffer, warn });
  }
  const load = loadNative();
  if (load.ok) return new NativeSource({ host, port, recvBufferBytes: config.recvBuffer, snaplen: largestSnaplen(config), binding: load.binding });
  if (config.source === 'native') {
    throw new ConfigError(`--source native: ${load.reason}; install python3, make and g++, then run \`npm ci\` again, or use --source dgram`);
  }
  log.warn({ event: 'native_unavailable', reason: load.reason }, `native source unavailable (${load.reason}); receiving with node:dgram`);
  return dgram();
}

/** The most bytes of frame any session keeps: the receive slots must hold that much whole. */
export function largestSnaplen(config: Config): number {
  return config.sessions.reduce((max, s) => Math.max(max, s.snaplen), config.snaplen);
}

/** --workers N: the receive threads, each with its own socket (native) or ring (afpacket). */
function workerSource(config: Config, log: Logger): Source {
  const { host, port } = config.listen;
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
