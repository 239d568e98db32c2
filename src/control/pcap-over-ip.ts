/**
 * PCAP-over-IP: a TCP listener that sends every client the all-session live stream as a
 * microsecond pcap (the convention Wireshark `-i TCP@host:port`, Arkime, Zeek and NetworkMiner
 * read: a pcap file header, then records, until either side closes). What a client sends is
 * ignored. Clients count against max-streams; one too many is closed at once.
 *
 *   connection ──▶ StreamHub.attach(socket, all sessions, µs) ──▶ records as they arrive
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Endpoint } from '../config.js';
import type { Logger } from '../log.js';
import { closeServer, listen } from './http.js';
import type { StreamHub } from './streams.js';

export class PcapOverIpServer {
  port = 0;
  private readonly server: Server = createServer((socket) => this.connected(socket));
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly endpoint: Endpoint,
    private readonly hub: StreamHub,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.port = await listen(this.server, this.endpoint);
  }

  /** Stops listening; the hub ends the clients' streams (StreamHub.close), anything left is destroyed. */
  async stop(): Promise<void> {
    if (!this.server.listening) return;
    await closeServer(this.server, () => {
      for (const s of this.sockets) s.destroy();
    });
  }

  private connected(socket: Socket): void {
    const peer = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`;
    // A reset by the peer is how many clients leave: 'close' follows and frees the client.
    socket.on('error', () => undefined);
    socket.setNoDelay(true);
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // Nothing is read from a client, but its bytes must not pile up in our buffers.
    socket.resume();
    const client = this.hub.attach(socket, { session: null, filter: null, nanoseconds: false, transport: 'pcap-over-ip', peer });
    if (client === null) {
      this.log.warn({ event: 'stream_refused', transport: 'pcap-over-ip', peer }, 'live stream refused: max-streams clients already connected');
      socket.destroy();
      return;
    }
    client.flush();
  }
}
