/**
 * The control plane: one HTTP server for Prometheus, the NLB health check and the JSON API.
 * It only reads counters; it never sits on the packet path.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { ConfigError, type Endpoint } from '../config.js';
import type { Logger } from '../log.js';
import type { FlowsAnswer } from './flowquery.js';

export interface Readiness {
  readonly ready: boolean;
  /** Why not ready, for the 503 body: e.g. "source not listening". */
  readonly reasons: readonly string[];
}

export interface ControlHandlers {
  readonly metricsContentType: string;
  metrics(): Promise<string>;
  readiness(): Promise<Readiness>;
  sessions(): unknown;
  files(): unknown;
  /** /api/flows: JSON lines of the newest flow records in a window (flowquery.ts). */
  flows(params: URLSearchParams): FlowsAnswer;
  /** A live pcap stream of one session (by name) or of all (null); answers `res` itself. */
  stream?(req: IncomingMessage, res: ServerResponse, session: string | null): Promise<void> | void;
}

type Route = (res: ServerResponse, req: IncomingMessage) => Promise<void> | void;

/** /api/sessions/<name>/stream: the name as the URL encodes it. */
const SESSION_STREAM = /^\/api\/sessions\/([^/]+)\/stream$/;

/** PEM files of the certificate (chain) and its key: the server speaks HTTPS. */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

export class ControlServer {
  port = 0;
  private server: Server | null = null;
  private readonly routes: ReadonlyMap<string, Route>;
  private readonly stream: ControlHandlers['stream'];

  constructor(
    private readonly endpoint: Endpoint,
    handlers: ControlHandlers,
    /** Bearer token for /api/*; null leaves them open. Metrics and health are always open. */
    private readonly apiToken: string | null,
    private readonly log: Logger,
    /** HTTPS with these files; null = plain HTTP. */
    private readonly tls: TlsFiles | null = null,
  ) {
    this.routes = new Map<string, Route>([
      ['/metrics', async (res) => send(res, 200, handlers.metricsContentType, await handlers.metrics())],
      ['/healthz', (res) => sendJson(res, 200, { status: 'ok' })],
      [
        '/readyz',
        async (res) => {
          const r = await handlers.readiness();
          sendJson(res, r.ready ? 200 : 503, r.ready ? { ready: true } : { ready: false, reasons: r.reasons });
        },
      ],
      ['/api/sessions', (res) => sendJson(res, 200, handlers.sessions())],
      ['/api/files', (res) => sendJson(res, 200, handlers.files())],
      [
        '/api/flows',
        (res, req) => {
          const url = req.url ?? '';
          const q = url.indexOf('?');
          const a = handlers.flows(new URLSearchParams(q < 0 ? '' : url.slice(q + 1)));
          if (!a.complete) res.setHeader('X-Mirrorcap-Complete', 'false');
          send(res, a.status, a.status === 200 ? 'application/x-ndjson; charset=utf-8' : 'application/json; charset=utf-8', a.body);
        },
      ],
    ]);
    this.stream = handlers.stream?.bind(handlers);
  }

  async start(): Promise<void> {
    // A slow or abusive client must not hold the server: bounded headers, requests, sockets,
    // and the timeouts checked every second (Node checks every 30 s by default).
    const options = { connectionsCheckingInterval: 1_000, maxHeaderSize: 16 * 1024 };
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => void this.handle(req, res);
    const server: Server = this.tls === null ? createServer(options, onRequest) : createTlsServer({ ...options, ...readTls(this.tls) }, onRequest);
    server.headersTimeout = 5_000;
    server.requestTimeout = 10_000;
    server.keepAliveTimeout = 5_000;
    server.maxConnections = 256;
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) return void socket.destroy();
      const status =
        err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
    });
    this.server = server;
    this.port = await listen(server, this.endpoint);
  }

  /**
   * SIGHUP: reads the certificate and key again (a renewed certificate) for new connections.
   * Files that cannot be read or do not match keep the running ones, with an error logged.
   */
  reloadTls(): void {
    if (this.tls === null || this.server === null) return;
    try {
      (this.server as TlsServer).setSecureContext(readTls(this.tls));
      this.log.info({ event: 'tls_reloaded', cert: this.tls.cert }, 'HTTPS certificate and key re-read');
    } catch (err) {
      this.log.error({ event: 'tls_reload_failed', cert: this.tls.cert, err: (err as Error).message }, 'cannot use the HTTPS certificate or key; the running ones stay');
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.server = null;
    await closeServer(server, () => server.closeAllConnections());
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = this.routes.get(path) ?? this.streamRoute(path);
    try {
      if (route === undefined) sendJson(res, 404, { error: 'not found', path });
      else if (path.startsWith('/api/') && !this.authorized(req)) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="mirrorcap"');
        sendJson(res, 401, { error: 'unauthorized: send Authorization: Bearer <http-token>' });
      } else if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        sendJson(res, 405, { error: 'method not allowed' });
      } else await route(res, req);
    } catch (err) {
      this.log.error({ err, path }, 'http handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    }
  }

  /** The stream routes, when streams are served: /api/stream and /api/sessions/<name>/stream. */
  private streamRoute(path: string): Route | undefined {
    const stream = this.stream;
    if (stream === undefined) return undefined;
    if (path === '/api/stream') return (res, req) => stream(req, res, null);
    const m = SESSION_STREAM.exec(path);
    if (m === null) return undefined;
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      return undefined;
    }
    return (res, req) => stream(req, res, name);
  }

  private authorized(req: IncomingMessage): boolean {
    if (this.apiToken === null) return true;
    // RFC 7235: the scheme is case-insensitive ("bearer", "BEARER"), one or more spaces follow it.
    const m = /^bearer +(.*)$/i.exec(req.headers.authorization ?? '');
    const given = Buffer.from(m === null ? '' : m[1]!);
    const want = Buffer.from(this.apiToken);
    return given.length === want.length && timingSafeEqual(given, want);
  }
}

/** Binds a server to an endpoint; resolves with the port it got (the endpoint's may be 0), rejects with the bind error. */
export async function listen(server: NetServer, endpoint: Endpoint): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(endpoint.port, endpoint.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

/** Stops listening and ends the open connections with `destroyConnections`; resolves once the server is closed. */
export function closeServer(server: NetServer, destroyConnections: () => void): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    destroyConnections();
  });
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`);
}

/** The PEM text of the certificate and key; throws a ConfigError naming the file that cannot be read. */
function readTls(files: TlsFiles): { cert: Buffer; key: Buffer } {
  const read = (path: string, option: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`cannot read ${option} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  return { cert: read(files.cert, 'http-tls-cert'), key: read(files.key, 'http-tls-key') };
}

/** The TLS files the options name: both or neither (a ConfigError otherwise). */
export function tlsFiles(cert: string | null, key: string | null): TlsFiles | null {
  if (cert === null && key === null) return null;
  if (cert === null || key === null) throw new ConfigError(`--http-tls-cert and --http-tls-key go together (only --${cert === null ? 'http-tls-key' : 'http-tls-cert'} is set)`);
  return { cert, key };
}
