/**
 * The portable source: node:dgram. Node hands us one Buffer per datagram; we copy each
 * into a slab right away and deliver batches on setImmediate, so everything downstream
 * sees the same batches as with the native source. Timestamps come from WallClock.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { parseAddr } from '../addr.js';
import { ADDR_BYTES } from './batch.js';
import { BatchingSource } from './batcher.js';
import { WallClock } from './clock.js';
import { udpSocketDrops } from './procnet.js';
import type { BatchSink, Source } from './source.js';

export interface DgramSourceOptions {
  readonly host: string;
  readonly port: number;
  readonly recvBuffer: number;
}

const SLAB_BYTES = 4 * 1024 * 1024;
const BATCH_CAPACITY = 1024;

export class DgramSource extends BatchingSource implements Source {
  readonly kind = 'dgram';
  ready = false;
  recvBuffer = 0;
  port = 0;
  private socket: Socket | null = null;
  private readonly clock = new WallClock();
  private clockTimer: NodeJS.Timeout | null = null;
  private lastAddrText = '';
  private readonly lastAddr = new Uint8Array(ADDR_BYTES);

  constructor(private readonly opts: DgramSourceOptions) {
    super(BATCH_CAPACITY, SLAB_BYTES);
  }

  async start(sink: BatchSink): Promise<void> {
    this.batcher.start(sink);
    const ipv6 = isIPv6(this.opts.host);
    const socket = createSocket({ type: ipv6 ? 'udp6' : 'udp4', ipv6Only: false });
    this.socket = socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.opts.port, this.opts.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    // A socket error after bind (rare for UDP) must not crash the process.
    socket.on('error', () => {
      this.ready = false;
    });
    try {
      socket.setRecvBufferSize(this.opts.recvBuffer);
    } catch {
      // The kernel refused the size; what we got is reported below.
    }
    this.recvBuffer = Math.floor(socket.getRecvBufferSize() / 2);
    this.port = socket.address().port;
    socket.on('message', this.onMessage);
    this.clockTimer = setInterval(() => this.clock.resync(), 1000).unref();
    this.ready = true;
  }

  /** /proc/net/udp's drops for our port; called at scrape time. */
  async refresh(): Promise<void> {
    const drops = await udpSocketDrops(this.port, isIPv6(this.opts.host));
    if (drops !== null) this.stats.kernelDrops = drops;
  }

  async stop(): Promise<void> {
    const socket = this.socket;
    if (socket === null) return;
    this.socket = null;
    this.ready = false;
    if (this.clockTimer) clearInterval(this.clockTimer);
    socket.off('message', this.onMessage);
    await new Promise<void>((resolve) => socket.close(() => resolve()));
    this.batcher.flush();
  }

  private readonly onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    const batcher = this.batcher;
    const b = batcher.batch;
    batcher.room(msg.length);
    const i = b.count++;
    msg.copy(b.slab, batcher.used);
    b.offsets[i] = batcher.used;
    b.lengths[i] = msg.length;
    b.wireLengths[i] = msg.length;
    this.clock.sample();
    b.tsSec[i] = this.clock.sec;
    b.tsNsec[i] = this.clock.nsec;
    if (rinfo.address !== this.lastAddrText) {
      this.lastAddrText = rinfo.address;
      parseAddr(rinfo.address, this.lastAddr, 0);
    }
    b.srcAddr.set(this.lastAddr, i * ADDR_BYTES);
    b.srcPort[i] = rinfo.port;
    batcher.commit(msg.length);
  };
}
