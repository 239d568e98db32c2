/**
 * Sends batches of datagrams from one slab to one destination: sendmmsg through the
 * native addon, or node:dgram when the addon is missing. The load generator uses it
 * now; `mirrorcap replay` will.
 *
 * Both kinds take the same arguments as the addon's Sender.send(): datagram i is
 * slab[offsets[i] .. offsets[i] + lengths[i]). The slab may be rewritten as soon as
 * send() resolves.
 */
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { loadNative, numericHost, type NativeBinding, type NativeSender } from '../native/addon.js';
import { codedError, ErrorCode } from '../errors.js';

const ECONNREFUSED = 111;

export interface DatagramSender {
  readonly kind: 'sendmmsg' | 'dgram';
  /** The local port datagrams leave from. */
  readonly localPort: number;
  /** Destination refused datagrams (ICMP port unreachable), counted, not thrown. */
  refused: number;
  /**
   * Sends datagrams first .. first+count; resolves how many the kernel took, which may be
   * fewer (0 when the socket buffer is full): the caller sends the rest again.
   */
  send(slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, first: number, count: number): Promise<number>;
  close(): Promise<void>;
}

export interface SenderOptions {
  host: string;
  port: number;
  /** SO_SNDBUF request; 0 keeps the default. */
  sendBufferBytes?: number;
  /** 'auto' (default) uses sendmmsg when the addon loaded. */
  kind?: 'auto' | 'sendmmsg' | 'dgram';
  binding?: NativeBinding;
}

export async function openSender(opts: SenderOptions): Promise<DatagramSender> {
  const host = await numericHost(opts.host);
  const kind = opts.kind ?? 'auto';
  let binding = opts.binding;
  if (binding === undefined && kind !== 'dgram') {
    const load = loadNative();
    if (load.ok) binding = load.binding;
    else if (kind === 'sendmmsg') throw codedError(ErrorCode.NATIVE_UNAVAILABLE, load.reason);
  }
  if (binding !== undefined && kind !== 'dgram') {
    const native = new binding.Sender(host, opts.port);
    if ((opts.sendBufferBytes ?? 0) > 0) native.setSendBuffer(opts.sendBufferBytes!);
    return new MmsgSender(native);
  }
  return DgramSender.open(host, opts.port, opts.sendBufferBytes ?? 0);
}

class MmsgSender implements DatagramSender {
  readonly kind = 'sendmmsg';
  readonly localPort: number;
  refused = 0;

  constructor(private readonly native: NativeSender) {
    this.localPort = native.address().port;
  }

  async send(slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, first: number, count: number): Promise<number> {
    let sent = 0;
    while (sent < count) {
      const n = this.native.send(slab, offsets, lengths, first + sent, Math.min(count - sent, 1024));
      if (n === -ECONNREFUSED) {
        // The error belongs to an earlier datagram; this call sent nothing, so try again.
        this.refused++;
        continue;
      }
      if (n < 0) throw errnoError(-n);
      if (n === 0) break;
      sent += n;
    }
    return sent;
  }

  async close(): Promise<void> {
    this.native.close();
  }
}

class DgramSender implements DatagramSender {
  readonly kind = 'dgram';
  refused = 0;

  private constructor(
    private readonly socket: Socket,
    readonly localPort: number,
  ) {}

  static async open(host: string, port: number, sendBufferBytes: number): Promise<DgramSender> {
    const socket = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4', ...(sendBufferBytes > 0 ? { sendBufferSize: sendBufferBytes } : {}) });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    // A connected socket reports ICMP port unreachable as an 'error' event, not per send.
    const sender = new DgramSender(socket, socket.address().port);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') sender.refused++;
    });
    return sender;
  }

  send(slab: Buffer, offsets: Uint32Array, lengths: Uint32Array, first: number, count: number): Promise<number> {
    // dgram keeps a reference to each buffer until its callback: resolve only when all are out.
    return new Promise((resolve) => {
      let pending = count;
      let sent = 0;
      if (count === 0) resolve(0);
      const done = (err: Error | null) => {
        if (err === null) sent++;
        else if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') this.refused++;
        if (--pending === 0) resolve(sent);
      };
      for (let i = first; i < first + count; i++) {
        this.socket.send(slab, offsets[i]!, lengths[i]!, done);
      }
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}

function errnoError(errno: number): Error {
  const code = getSystemErrorName(-errno);
  return Object.assign(new Error(`sendmmsg ${code}`), { code, errno: -errno, syscall: 'sendmmsg' });
}
