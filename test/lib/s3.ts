/**
 * A real S3-protocol server for tests (s3rver, files in a temp folder) and a recording proxy in
 * front of it, which sees every request the SDK sends: method, URL, headers and the digests of
 * the body. The proxy can also break things on purpose: corrupt a body in transit, reset a
 * connection, answer 503 SlowDown, stall, or hold back the answer to a request after the server
 * has stored it (a crash between the store's reply and our marker).
 *
 * s3rver 3.7 checks neither Content-MD5 nor x-amz-content-sha256 (it leaves V4 signatures
 * unverified), so the proxy checks both as S3 does and answers 400 BadDigest /
 * XAmzContentSHA256Mismatch like S3 for a body that does not match them.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
type S3rverClass = new (opts: Record<string, unknown>) => S3rverInstance;
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass;

/** s3rver's only account. */
export const S3RVER_KEY = 'S3RVER';

/** Environment for the SDK's default chain: s3rver's keys, nothing from ~/.aws, no instance metadata service. */
export function useTestCredentials(keyId = S3RVER_KEY, secret = S3RVER_KEY): void {
  process.env.AWS_ACCESS_KEY_ID = keyId;
  process.env.AWS_SECRET_ACCESS_KEY = secret;
  delete process.env.AWS_SESSION_TOKEN;
  delete process.env.AWS_PROFILE;
  delete process.env.AWS_REGION;
  delete process.env.AWS_DEFAULT_REGION;
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  process.env.AWS_CONFIG_FILE = '/nonexistent/mirrorcap-test-aws-config';
  process.env.AWS_SHARED_CREDENTIALS_FILE = '/nonexistent/mirrorcap-test-aws-credentials';
}

/** s3rver on 127.0.0.1, storing in `dir`; restartable on the same port (objects survive). */
export class S3Server {
  private server: S3rverInstance | null = null;
  port = 0;

  constructor(
    private readonly dir: string,
    private readonly buckets: readonly string[],
  ) {}

  async start(): Promise<void> {
    this.server = new S3rver({ address: '127.0.0.1', port: this.port, silent: true, directory: this.dir, configureBuckets: this.buckets.map((name) => ({ name })) });
    this.port = (await this.server.run()).port;
  }

  async stop(): Promise<void> {
    await this.server?.close();
    this.server = null;
  }
}

export interface Recorded {
  readonly method: string;
  /** Path and query, e.g. /bucket/key?uploadId=..&partNumber=2 */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly bytes: number;
  /** Of the body as the proxy received it. */
  readonly md5: string;
  readonly sha256: string;
  /** What the client got: the server's status, ours, or 0 (reset, stalled, held). */
  status: number;
}

/** What the proxy does with one request, decided when its body is in. */
export type Fault = 'corrupt' | 'reset' | 'slowdown' | 'stall' | 'hold';

export class S3Proxy {
  readonly requests: Recorded[] = [];
  /** Decides a fault for a request (none = forward it as it is). */
  fault: ((r: Recorded) => Fault | undefined) | null = null;
  /** Called when a held request has been answered by the server (its answer withheld). */
  onHeld: ((r: Recorded) => void) | null = null;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly upstream: () => number) {}

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => this.handle(req.method!, req.url!, req.headers, Buffer.concat(chunks), res));
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve(undefined));
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Requests that put object bytes: PutObject and UploadPart (PUT with a body). */
  uploads(): Recorded[] {
    return this.requests.filter((r) => r.method === 'PUT' && r.bytes > 0);
  }

  private handle(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer, res: ServerResponse): void {
    const rec: Recorded = {
      method,
      url,
      headers,
      bytes: body.length,
      md5: createHash('md5').update(body).digest('base64'),
      sha256: createHash('sha256').update(body).digest('hex'),
      status: 0,
    };
    this.requests.push(rec);
    const fault = this.fault?.(rec);
    if (fault === 'reset') return void res.socket?.destroy();
    if (fault === 'stall') return;
    if (fault === 'slowdown') return this.answer(rec, res, 503, 'SlowDown', 'Please reduce your request rate.');
    if (fault === 'corrupt' && body.length > 0) body[body.length >> 1]! ^= 0x5a;
    // S3's checks on the bytes it received.
    const md5 = headers['content-md5'];
    if (typeof md5 === 'string' && md5 !== createHash('md5').update(body).digest('base64')) {
      return this.answer(rec, res, 400, 'BadDigest', 'The Content-MD5 you specified did not match what we received.');
    }
    const sha = headers['x-amz-content-sha256'];
    if (typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha) && sha !== createHash('sha256').update(body).digest('hex')) {
      return this.answer(rec, res, 400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    const up = request({ host: '127.0.0.1', port: this.upstream(), method, path: url, headers }, (upRes) => {
      const parts: Buffer[] = [];
      upRes.on('data', (c: Buffer) => parts.push(c));
      upRes.on('end', () => {
        if (fault === 'hold') {
          this.onHeld?.(rec);
          return;
        }
        rec.status = upRes.statusCode!;
        res.writeHead(upRes.statusCode!, upRes.headers);
        res.end(Buffer.concat(parts));
      });
    });
    // The server is down: the client sees its connection dropped, as without a proxy.
    up.on('error', () => res.socket?.destroy());
    up.end(body);
  }

  private answer(rec: Recorded, res: ServerResponse, status: number, code: string, message: string): void {
    rec.status = status;
    res.writeHead(status, { 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>test</RequestId></Error>`);
  }
}

/** What a test file stores into: s3rver with `bucket`, the proxy before it, a client of the server. */
export interface S3Rig {
  readonly root: string;
  readonly server: S3Server;
  readonly proxy: S3Proxy;
  readonly direct: S3Client;
  /** Stops all three and removes `root`. */
  close(): Promise<void>;
}

/** Test credentials in the environment, a temp folder, s3rver storing in it, the recording proxy. */
export async function startS3Rig(bucket: string, name: string): Promise<S3Rig> {
  useTestCredentials();
  const root = await mkdtemp(join(tmpdir(), `mirrorcap-${name}-`));
  const server = new S3Server(join(root, 'store'), [bucket]);
  await server.start();
  const proxy = new S3Proxy(() => server.port);
  await proxy.start();
  const direct = directClient(server.port);
  return {
    root,
    server,
    proxy,
    direct,
    close: async () => {
      direct.destroy();
      await proxy.stop();
      await server.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** A plain client of the server itself, to look at what arrived. */
export function directClient(port: number): S3Client {
  return new S3Client({ endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY } });
}

export async function objectBytes(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

export async function objectHead(client: S3Client, bucket: string, key: string): Promise<{ size: number; storageClass: string | undefined; metadata: Record<string, string> } | null> {
  try {
    const h = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return { size: h.ContentLength!, storageClass: h.StorageClass, metadata: h.Metadata ?? {} };
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return null;
    throw err;
  }
}

export async function listKeys(client: S3Client, bucket: string): Promise<string[]> {
  const r = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (r.Contents ?? []).map((o) => o.Key!).sort();
}
