/**
 * The native addon (native/mirrorcap_native.cc): its surface exactly as the C++ defines it, and
 * the loader. Sources (source/native.ts) and tools (replay/sender.ts) import it from here.
 * The loader never throws at import: loadNative() says why the addon is missing so
 * `--source auto` can fall back to dgram with one warning.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------------------------------
// The addon's surface, exactly as mirrorcap_native.cc defines it.

export interface SocketAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/** What the kernel granted for a socket buffer; Linux reports twice the request (bookkeeping). */
export interface BufferGrant {
  granted: number;
  /** True when SO_*BUFFORCE worked (CAP_NET_ADMIN), so the sysctl maximum did not cap it. */
  forced: boolean;
}

/** Memory the receiver writes into; every array belongs to JS and is pinned until close(). */
export interface ReceiverMemory {
  slab: Buffer;
  slotBytes: number;
  capacity: number;
  lengths: Uint32Array;
  wireLengths: Uint32Array;
  tsSec: Uint32Array;
  tsNsec: Uint32Array;
  srcAddr: Uint8Array;
  srcPort: Uint16Array;
  /** Indexed by the COUNTER_* constants. */
  counters: Float64Array;
  maxBatchesPerTurn: number;
  /** After the socket runs dry, rest this long before reading again (0 = wake per datagram). */
  coalesceMs: number;
  /** At low rates the rest doubles up to this (default coalesceMs: fixed); see Receiver::Coalesce. */
  maxCoalesceMs?: number;
  /** After the sink says it is saturated, rest this long before reading again. */
  saturatedRestMs: number;
  /**
   * A worker thread's receiver: the slab and arrays hold more than `capacity` slots, and each
   * recvmmsg lands at the slot slotBase[0] names (read before every call); -1 = none free, rest.
   */
  slotBase?: Int32Array;
  /** The rest while slotBase[0] is -1; default saturatedRestMs. */
  slotWaitMs?: number;
  /** Bytes left free at the start of each slot, in front of the datagram (zero-copy writes); default 0. */
  headroom?: number;
}

export interface NativeReceiver {
  address(): SocketAddress;
  /** bytes <= 0 only reads the current size. */
  setRecvBuffer(bytes: number): BufferGrant;
  /** The socket's kernel drop counter now (SO_MEMINFO); -1 once closed. */
  socketDrops(): number;
  /** Slot i of a batch is slab[i * slotBytes ..]; onBatch(count) runs once per recvmmsg. */
  start(memory: ReceiverMemory, onBatch: (count: number) => boolean | void): void;
  /** Reads what is queued in the socket now (at most maxBatches recvmmsg calls); returns how many datagrams. */
  drainQueued(maxBatches: number): number;
  /** Stops polling and closes the socket at once; idempotent. */
  close(): void;
}

export interface NativeSender {
  address(): SocketAddress;
  /** bytes <= 0 only reads the current size. */
  setSendBuffer(bytes: number): BufferGrant;
  /**
   * sendmmsg of datagrams first .. first+count (at most 1024) from slab[offsets[i]], lengths[i];
   * returns how many the kernel took (0 when the socket buffer is full), or -errno.
   */
  send(slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, first: number, count: number): number;
  close(): void;
}

/** Where the ring writes a batch: frame i is ring()[offsets[i] .. + lengths[i]), link header first. */
export interface RingFrames {
  capacity: number;
  offsets: Uint32Array;
  lengths: Uint32Array;
  wireLengths: Uint32Array;
  tsSec: Uint32Array;
  tsNsec: Uint32Array;
  /** Indexed by the RING_* constants. */
  counters: Float64Array;
  maxBatchesPerTurn: number;
  /** After the sink says it is saturated, rest this long before reading again (the ring fills, the kernel drops and counts). */
  saturatedRestMs: number;
}

export interface RingOptions {
  /** A power-of-two number of pages. */
  blockBytes: number;
  blockCount: number;
  /** A block that is not full is handed over after this long. */
  retireMs: number;
  /** The kernel's filter, classic BPF: code, jt, jf, k per instruction. */
  filter: Uint32Array;
  /** A PACKET_FANOUT group (0..65535) to join, split by flow hash (worker threads); absent: none. */
  fanout?: number;
}

export interface NativePacketRing {
  /** The mapped ring; unmapped only once this Buffer is collected. */
  ring(): Buffer;
  /** Adds the kernel's drop and freeze counts since the last call to the counters; false once closed or before start(). */
  readStats(): boolean;
  /** onBatch(count) once per batch of received frames; they are valid until it returns. */
  start(frames: RingFrames, onBatch: (count: number) => boolean | void): void;
  /** Delivers the blocks the kernel has handed over now (at most maxBatches batches); returns how many frames. */
  drainQueued(maxBatches: number): number;
  /** Unbinds from the interface and closes the socket at once; idempotent. */
  close(): void;
}

export interface NativeBinding {
  /** Binds at once; throws an Error with code/errno/syscall (EADDRINUSE ...). Host must be numeric. */
  Receiver: new (host: string, port: number, reusePort: boolean) => NativeReceiver;
  /** Connected to host:port; host must be numeric. */
  Sender: new (host: string, port: number) => NativeSender;
  /** An AF_PACKET TPACKET_V3 ring bound to the interface; throws an Error with code/errno/syscall (ENODEV, EPERM ...). */
  PacketRing: new (iface: string, options: RingOptions) => NativePacketRing;
  /**
   * On the thread pool: starts writing [start, end) of the file to disk, waits until
   * [dropStart, dropEnd) is on disk and drops it from the page cache (sync_file_range,
   * posix_fadvise DONTNEED). Rejects with code/errno/syscall.
   */
  writeBehind(fd: number, start: number, end: number, dropStart: number, dropEnd: number): Promise<void>;
  /**
   * On the thread pool: writes piece i = buffers[which[i]][offsets[i] .. + lengths[i]) for i < count,
   * in order, at `position` of the file (pwritev, IOV_MAX iovecs a call, short writes resumed).
   * Resolves with the bytes written (all of them); rejects with code/errno/syscall. The buffers
   * must not be written meanwhile.
   */
  writePieces(fd: number, position: number, buffers: Buffer[], which: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): Promise<number>;
  /** Points fd 2 into a non-blocking pipe; returns [the saved fd 2, the pipe's read end]. */
  redirectStderr(): [number, number];
  /** Puts fd 2 back and returns what was written meanwhile. */
  restoreStderr(saved: number, readEnd: number): string;
}

/** Slots of the receiver's counters array. */
export const COUNTER_RXQ_OVFL = 0;
export const COUNTER_TRUNCATED = 1;
export const COUNTER_RECV_ERRORS = 2;
export const COUNTER_LAST_ERRNO = 3;
/** recvmmsg calls: how often the receiver woke and read. */
export const COUNTER_READS = 4;
export const COUNTER_COUNT = 5;

/** Slots of the packet ring's counters array. */
export const RING_DROPS = 0;
export const RING_FREEZES = 1;
export const RING_TRUNCATED = 2;
export const RING_ERRORS = 3;
export const RING_LAST_ERRNO = 4;
export const RING_COUNTER_COUNT = 5;

// ---------------------------------------------------------------------------------------
// Loader

export type NativeLoad =
  | { readonly ok: true; readonly binding: NativeBinding; readonly path: string }
  | { readonly ok: false; readonly reason: string; readonly path: string };

/** dist/src/native/addon.js -> native/build/Release/ at the package root. */
export const DEFAULT_ADDON_PATH = fileURLToPath(
  new URL('../../../native/build/Release/mirrorcap_native.node', import.meta.url),
);
const BUILD_LOG = fileURLToPath(new URL('../../../native/build.log', import.meta.url));

const require = createRequire(import.meta.url);
let defaultLoad: NativeLoad | undefined;

/**
 * Loads the addon once per path (the default path is cached). Never throws: a missing or
 * broken addon comes back as { ok: false, reason } for the caller's one warning line.
 */
export function loadNative(path: string = DEFAULT_ADDON_PATH): NativeLoad {
  if (path === DEFAULT_ADDON_PATH && defaultLoad !== undefined) return defaultLoad;
  let load: NativeLoad;
  if (process.platform !== 'linux') {
    load = { ok: false, path, reason: `recvmmsg is Linux-only (platform ${process.platform})` };
  } else if (!existsSync(path)) {
    const hint = existsSync(BUILD_LOG) ? 'the build failed, see native/build.log' : 'run `npm run install` to build it';
    load = { ok: false, path, reason: `native addon not built: ${path} is missing (${hint})` };
  } else {
    try {
      load = { ok: true, path, binding: require(path) as NativeBinding };
    } catch (err) {
      const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
      load = { ok: false, path, reason: `native addon failed to load: ${msg}` };
    }
  }
  if (path === DEFAULT_ADDON_PATH) defaultLoad = load;
  return load;
}

/**
 * Runs `fn` (synchronous) with fd 2 going into a pipe, and hands what a C library printed
 * there meanwhile to `caught`, also when fn throws. Without the addon fn runs as is.
 */
export function catchStderr<T>(fn: () => T, caught: (text: string) => void): T {
  const load = loadNative();
  if (!load.ok) return fn();
  const [saved, readEnd] = load.binding.redirectStderr();
  try {
    return fn();
  } finally {
    caught(load.binding.restoreStderr(saved, readEnd));
  }
}

/** Strips [] from an IPv6 literal and resolves a name once, at start (never per packet). */
export async function numericHost(host: string): Promise<string> {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) !== 0) return bare;
  return (await lookup(bare)).address;
}
