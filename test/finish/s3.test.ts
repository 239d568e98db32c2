/**
 * The S3 step against a real S3-protocol server (s3rver) started here, behind a recording proxy
 * (test/lib/s3.ts): objects byte-identical to the files under the template's keys, checksums and
 * SSE / storage-class headers on the wire, a corrupted body refused and sent again, throttling
 * and a server stopped mid-run and restarted (everything arrives once, whole), a permanent error
 * logged once with its fix, restarts that upload nothing twice, kill -9 between finish and
 * upload, and credentials absent from everything we log, throw or count.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { ConfigError } from '../../src/config.js';
import { S3Uploader, type UploadFile, type UploadResult } from '../../src/finish/s3.js';
import { redact, S3UploadError } from '../../src/finish/s3-errors.js';
import { deleteWithMarker, markerPath, readMarker } from '../../src/finish/s3-marker.js';
import { flowLogObjectKey, objectKey, s3Settings, type S3Options } from '../../src/finish/s3-settings.js';
import { waitFor } from '../lib/appliance.js';
import { listKeys, objectBytes, objectHead, startS3Rig, useTestCredentials, type Recorded } from '../lib/s3.js';

const BUCKET = 'captures';
const START = Date.UTC(2026, 10, 26, 16, 45, 0) / 1000; // 2026-11-26T16:45:00Z
const RETRY = { baseMs: 50, maxMs: 400, permanentMs: 600 };
const MiB = 1 << 20;

const { root, server, proxy, direct, close } = await startS3Rig(BUCKET, 's3');
t.teardown(close);

let folders = 0;
/** A fresh folder of capture-named files of the given sizes (random bytes). */
async function files(sizes: readonly number[], session = 'web'): Promise<UploadFile[]> {
  const dir = join(root, `files-${folders++}`);
  await mkdir(dir);
  return Promise.all(
    sizes.map(async (size, i) => {
      const path = join(dir, `${session}-20261126T164500Z-${String(i).padStart(6, '0')}.pcap`);
      await writeFile(path, randomBytes(size));
      return { path, session, vni: 42, start: START };
    }),
  );
}

/** A logger whose JSON lines the test reads. */
function capture(): { log: pino.Logger; text: () => string } {
  const raw: string[] = [];
  const log = pino({ level: 'debug' }, new Writable({ write: (c: Buffer, _e, cb) => (raw.push(c.toString()), cb()) }));
  return { log, text: () => raw.join('') };
}

function events(text: string, event: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.event === event);
}

function uploader(log: pino.Logger, opts: Partial<S3Options> = {}, partSize?: number): S3Uploader {
  return new S3Uploader(s3Settings({ url: `s3://${BUCKET}/pfx`, endpoint: proxy.endpoint, host: 'probe-1', ...opts }), log, { retry: RETRY, ...(partSize !== undefined && { partSize }) });
}

async function sameBytes(t: Test, results: readonly UploadResult[]): Promise<void> {
  for (const r of results) {
    const want = await readFile(r.path);
    const got = await objectBytes(direct, BUCKET, r.key);
    t.ok(got.equals(want), `${r.key}: object byte-identical to the file (${got.length} bytes)`);
  }
}

function keyOf(r: Recorded): string {
  return decodeURIComponent(r.url.split('?')[0]!.slice(`/${BUCKET}/`.length));
}

t.test('settings: URL, key template and options are validated with clear errors', async (t) => {
  const ok = s3Settings({ url: 's3://my-bucket/a/b/', host: 'ip-10-0-0-1.ec2.internal' });
  t.match(ok, { bucket: 'my-bucket', prefix: 'a/b', endpoint: null, pathStyle: false, region: null, concurrency: 2, host: 'ip-10-0-0-1.ec2.internal' });
  t.equal(
    objectKey(ok, { session: 'web', vni: 42, start: START, file: 'web-20261126T164500Z-000001.pcap' }),
    'a/b/ip-10-0-0-1.ec2.internal/web/2026/11/26/web-20261126T164500Z-000001.pcap',
    'the default template',
  );
  const bare = s3Settings({ url: 's3://my-bucket', host: 'h1' });
  t.equal(objectKey(bare, { session: 'web', vni: 42, start: START, file: 'f.pcap' }), 'h1/web/2026/11/26/f.pcap', 'an empty prefix leaves no leading or double slash');
  const custom = s3Settings({ url: 's3://b-1/x', host: 'h1', keyTemplate: '{prefix}/vni-{vni}/{yyyy}{mm}{dd}T{hh}/{host}/{session}/{file}' });
  t.equal(objectKey(custom, { session: 'db', vni: null, start: START, file: 'f.pcap' }), 'x/vni-unknown/20261126T16/h1/db/f.pcap');
  const withEndpoint = s3Settings({ url: 's3://b-1', endpoint: 'http://127.0.0.1:9000/', host: 'h' });
  t.match(withEndpoint, { endpoint: 'http://127.0.0.1:9000', pathStyle: true, region: 'us-east-1' }, 'an endpoint: path style and a region by default');
  t.throws(() => objectKey(s3Settings({ url: 's3://b-1/' + 'p'.repeat(900), host: 'h' }), { session: 's'.repeat(128), vni: 1, start: START, file: 'f'.repeat(100) }), RangeError, 'a key over 1024 bytes');
  const flowLog = 'AWSLogs/123456789012/vpcflowlogs/eu-west-1/2026/11/26/123456789012_vpcflowlogs_eu-west-1_fl-0123456789abcdef0_20261126T1645Z_0a1b2c3d.log.gz';
  t.equal(flowLogObjectKey(custom, flowLog), `x/${flowLog}`, 'a flow-log file: its path under the prefix, not the template (AWS layout)');
  t.equal(flowLogObjectKey(bare, flowLog), flowLog, 'an empty prefix: the path itself');
  t.throws(() => flowLogObjectKey(bare, '../web/f.pcap'), RangeError, 'a path outside AWSLogs/ is refused');

  const bad: [Partial<S3Options>, RegExp][] = [
    [{ url: 'https://bucket/x' }, /expected s3:\/\/BUCKET/],
    [{ url: 's3://a' }, /invalid s3 bucket "a"/],
    [{ url: 's3://bucket/../x' }, /no "\." or "\.\." segment/],
    [{ url: 's3://bucket/x', keyTemplate: '{host}/{file}' }, /names prefix "x" but the template has no \{prefix\}/],
    [{ url: 's3://bucket', keyTemplate: '{host}/{session}' }, /must hold \{file\}/],
    [{ url: 's3://bucket', keyTemplate: '{session}/{file}' }, /must hold \{host\}.*overwrite each other/],
    [{ url: 's3://bucket', keyTemplate: '{host}/{day}/{file}' }, /unknown placeholder \{day\}/],
    [{ url: 's3://bucket', keyTemplate: '{host} {file}' }, /outside placeholders/],
    [{ url: 's3://bucket', endpoint: 'http://AKIDEXAMPLE:secret@127.0.0.1:9000' }, /must not hold a user name or password/],
    [{ url: 's3://bucket', endpoint: 'ftp://x' }, /neither http: nor https:/],
    [{ url: 's3://bucket', sse: 'aws:kms:dsse' }, /expected AES256 or aws:kms/],
    [{ url: 's3://bucket', sse: 'AES256', kmsKeyId: 'k' }, /needs --s3-sse aws:kms/],
    [{ url: 's3://bucket', storageClass: 'COLD' }, /invalid s3-storage-class "COLD"/],
    [{ url: 's3://bucket', concurrency: 0 }, /invalid s3-concurrency 0/],
    [{ url: 's3://bucket', region: 'EU West' }, /invalid s3-region/],
    [{ url: 's3://bucket', host: 'a/b' }, /cannot stand in an S3 key/],
  ];
  for (const [opts, why] of bad) {
    t.throws(() => s3Settings({ host: 'h', ...opts } as S3Options), ConfigError);
    t.throws(() => s3Settings({ host: 'h', ...opts } as S3Options), why, `${JSON.stringify(opts)} → ${why}`);
  }
  // The endpoint with credentials is refused without repeating them.
  try {
    s3Settings({ url: 's3://bucket', endpoint: 'http://AKIDEXAMPLE:secret@127.0.0.1:9000' });
  } catch (err) {
    t.notMatch((err as Error).message, /AKIDEXAMPLE|secret/, 'the error does not repeat the credentials');
  }
});

t.test('uploads: byte-identical objects under the template keys, checksums on every body, SSE and storage class sent', async (t) => {
  proxy.requests.length = 0;
  const { log, text } = capture();
  const up = uploader(log, { sse: 'aws:kms', kmsKeyId: 'alias/mirrorcap', storageClass: 'STANDARD_IA' }, 5 * MiB);
  t.teardown(() => up.close());
  await up.start();
  const list = await files([100_000, 1, 300_000, 12 * MiB + 12345]);
  const results = await Promise.all(list.map((f) => up.upload(f)));
  t.same(results.map((r) => r.outcome), ['uploaded', 'uploaded', 'uploaded', 'uploaded']);
  t.same(
    results.map((r) => r.key),
    list.map((f) => `pfx/probe-1/web/2026/11/26/${f.path.split('/').pop()}`),
    'keys per the default template',
  );
  t.same(await listKeys(direct, BUCKET).then((keys) => keys.filter((k) => k.startsWith('pfx/probe-1/web/'))), results.map((r) => r.key).sort(), 'nothing else under the prefix');
  await sameBytes(t, results);
  for (const r of results) {
    const head = await objectHead(direct, BUCKET, r.key);
    t.equal(head?.storageClass, 'STANDARD_IA', 'the store recorded the storage class');
    t.equal(head?.metadata['mirrorcap-sha256'], createHash('sha256').update(await readFile(r.path)).digest('hex'), 'and the sha256 of the file');
    t.match(await readMarker(r.path), { bucket: BUCKET, key: r.key, bytes: r.bytes, sha256: r.sha256 }, 'a marker beside the file');
  }

  const bodies = proxy.uploads();
  t.equal(bodies.length, 3 + 3, 'three PUTs and three parts (12 MiB in 5 MiB parts)');
  for (const b of bodies) {
    t.equal(b.headers['content-md5'], b.md5, `${b.url}: Content-MD5 of the bytes sent`);
    t.equal(b.headers['x-amz-content-sha256'], b.sha256, 'x-amz-content-sha256 of the bytes sent');
    t.notOk(String(b.headers['content-encoding'] ?? '').includes('aws-chunked'), 'no aws-chunked body');
    t.notOk(Object.keys(b.headers).some((h) => h.startsWith('x-amz-checksum-') || h === 'x-amz-sdk-checksum-algorithm'), 'no SDK flexible checksum');
  }
  const creates = proxy.requests.filter((r) => r.method === 'POST' && r.url.includes('?uploads'));
  t.equal(creates.length, 1, 'one multipart upload');
  t.equal(proxy.requests.filter((r) => r.method === 'POST' && r.url.includes('uploadId=')).length, 1, 'completed once');
  for (const r of [...creates, ...bodies.filter((b) => !b.url.includes('partNumber='))]) {
    t.equal(r.headers['x-amz-server-side-encryption'], 'aws:kms', `${r.method} ${keyOf(r)}: SSE header`);
    t.equal(r.headers['x-amz-server-side-encryption-aws-kms-key-id'], 'alias/mirrorcap', 'KMS key id');
    t.equal(r.headers['x-amz-storage-class'], 'STANDARD_IA', 'storage class');
  }
  t.equal(up.uploadedFiles, 4);
  t.equal(up.uploadedBytes, results.reduce((n, r) => n + r.bytes, 0));
  t.equal(up.pending, 0);
  t.equal(up.oldestPendingSeconds(), 0);
  t.equal(events(text(), 's3_uploaded').length, 4, 'one log line per file');

  const aes = uploader(capture().log, { sse: 'AES256', keyTemplate: '{prefix}/{host}/aes/{file}' });
  t.teardown(() => aes.close());
  const [one] = await files([5000]);
  proxy.requests.length = 0;
  const r = await aes.upload(one!);
  t.equal(proxy.uploads()[0]?.headers['x-amz-server-side-encryption'], 'AES256');
  t.notOk('x-amz-server-side-encryption-aws-kms-key-id' in proxy.uploads()[0]!.headers);
  t.equal(r.key, `pfx/probe-1/aes/${one!.path.split('/').pop()}`);
});

t.test('a body corrupted in transit is refused by its checksum and sent again', async (t) => {
  proxy.requests.length = 0;
  let corrupted = 0;
  proxy.fault = (r) => (r.method === 'PUT' && r.bytes > 0 && corrupted++ === 0 ? 'corrupt' : undefined);
  t.teardown(() => (proxy.fault = null));
  const { log, text } = capture();
  const up = uploader(log, { keyTemplate: '{prefix}/{host}/corrupt/{file}' });
  t.teardown(() => up.close());
  const [f] = await files([200_000]);
  const r = await up.upload(f!);
  t.equal(proxy.uploads()[0]?.status, 400, 'the corrupted body was refused (BadDigest)');
  t.ok(proxy.uploads().length >= 2, 'and sent again');
  t.equal(up.failures.get('BadDigest'), 1, 'counted by code');
  await sameBytes(t, [r]);
  t.equal(events(text(), 's3_retrying')[0]?.code, 'BadDigest');
});

t.test('throttling (503 SlowDown) and dropped connections are retried with backoff', async (t) => {
  proxy.requests.length = 0;
  let n = 0;
  // Six 503s: both files' first attempts (the SDK tries each 3 times), then two dropped connections.
  proxy.fault = (r) => {
    if (r.method !== 'PUT') return undefined;
    const i = n++;
    return i < 6 ? 'slowdown' : i < 9 ? 'reset' : undefined;
  };
  t.teardown(() => (proxy.fault = null));
  const { log } = capture();
  const up = uploader(log, { keyTemplate: '{prefix}/{host}/throttle/{file}' });
  t.teardown(() => up.close());
  const list = await files([50_000, 60_000]);
  const results = await Promise.all(list.map((f) => up.upload(f)));
  t.equal(proxy.requests.filter((r) => r.status === 503).length, 6, 'six 503 SlowDown answers');
  t.ok(up.retries >= 1, `retried (${up.retries} times after the SDK's own attempts)`);
  t.equal(up.failures.get('SlowDown'), 2, 'SlowDown counted for both files');
  t.ok([...up.failures.keys()].some((c) => c !== 'SlowDown'), `the dropped connections too: ${[...up.failures.keys()].join(', ')}`);
  await sameBytes(t, results);
});

t.test('the server stopped mid-run and restarted: everything arrives once and whole', async (t) => {
  proxy.requests.length = 0;
  const { log, text } = capture();
  const up = uploader(log, { keyTemplate: '{prefix}/{host}/outage/{file}' }, 5 * MiB);
  t.teardown(() => up.close());
  const list = await files([11 * MiB, 300_000, 400_000, 500_000, 11 * MiB, 600_000], 'outage');
  const all = Promise.all(list.map((f) => up.upload(f)));
  await waitFor(() => up.uploadedFiles >= 1, 20_000, 'a first upload');
  await server.stop();
  const down = Date.now();
  await waitFor(() => up.retries >= 3, 20_000, 'retries while the server is down');
  t.ok(up.pending > 0, `files wait (${up.pending})`);
  t.ok(up.oldestPendingSeconds() >= 0);
  // Whatever is in the store while it is down is whole: nothing half-written under a final key.
  await server.start();
  for (const f of list) {
    const key = up.keyFor(f);
    const head = await objectHead(direct, BUCKET, key);
    if (head !== null) t.equal(head.size, (await readFile(f.path)).length, `${key}: present only whole`);
  }
  const results = await all;
  t.ok(Date.now() - down > 0);
  t.same(await listKeys(direct, BUCKET).then((k) => k.filter((x) => x.includes('/outage/'))), list.map((f) => up.keyFor(f)).sort(), 'every file once, nothing else');
  await sameBytes(t, results);
  t.equal(up.uploadedFiles, list.length);
  t.ok(events(text(), 's3_retrying').length >= 1, 'the outage was logged');
  t.equal(events(text(), 's3_recovered').length, 1, 'and its end');
  t.ok([...up.failures.keys()].some((c) => /^(ECONNRESET|ECONNREFUSED|EPIPE|Unknown|TimeoutError)$/.test(c)), `network failures counted: ${[...up.failures.keys()].join(', ')}`);
});

t.test('a multipart upload that fails is aborted: no object under the key until it succeeds', async (t) => {
  proxy.requests.length = 0;
  let failing = true;
  proxy.fault = (r) => (failing && r.url.includes('partNumber=2') ? 'slowdown' : undefined);
  t.teardown(() => (proxy.fault = null));
  const { log } = capture();
  const up = uploader(log, { keyTemplate: '{prefix}/{host}/abort/{file}' }, 5 * MiB);
  t.teardown(() => up.close());
  const [f] = await files([11 * MiB]);
  const done = up.upload(f!);
  await waitFor(() => up.retries >= 1, 20_000, 'a failed attempt');
  t.ok(proxy.requests.some((r) => r.method === 'DELETE' && r.url.includes('uploadId=')), 'AbortMultipartUpload sent');
  t.equal(await objectHead(direct, BUCKET, up.keyFor(f!)), null, 'no object under the key');
  failing = false;
  await sameBytes(t, [await done]);
});

t.test('a permanent error (no such bucket) is logged once with its fix, retried slowly, and the files go up once it is fixed', async (t) => {
  const { log, text } = capture();
  const up = new S3Uploader(s3Settings({ url: 's3://late-bucket/p', endpoint: proxy.endpoint, host: 'probe-1' }), log, { retry: RETRY });
  t.teardown(() => up.close());
  const list = await files([10_000, 20_000, 30_000]);
  const all = Promise.all(list.map((f) => up.upload(f)));
  await waitFor(() => (up.failures.get('NoSuchBucket') ?? 0) >= 3, 20_000, 'three refusals');
  const refused = events(text(), 's3_refused');
  t.equal(refused.length, 1, 'logged once');
  t.match(refused[0], { level: 50, code: 'NoSuchBucket', status: 404 });
  t.match(String(refused[0]!.msg), /bucket "late-bucket" does not exist.*create it or correct --s3/, 'with the fix');
  t.equal(up.pending, 3, 'every file still pending');
  t.equal(up.uploadedFiles, 0);
  await direct.send(new CreateBucketCommand({ Bucket: 'late-bucket' }));
  const results = await all;
  for (const r of results) t.ok((await objectBytes(direct, 'late-bucket', r.key)).equals(await readFile(r.path)), `${r.key} arrived`);
  t.equal(events(text(), 's3_recovered').length, 1);
});

t.test('restarts upload nothing twice: markers, a crash between upload and marker, and a foreign object under the key', async (t) => {
  const list = await files([40_000, 50_000, 60_000]);
  const first = uploader(capture().log, { keyTemplate: '{prefix}/{host}/restart/{file}' });
  await Promise.all(list.map((f) => first.upload(f)));
  await first.close();

  // As after a crash right after the store confirmed the second file: its marker is missing.
  await unlink(markerPath(list[1]!.path));
  // And a different object sits under the third file's key (another appliance with the same host name).
  await unlink(markerPath(list[2]!.path));
  await direct.send(new PutObjectCommand({ Bucket: BUCKET, Key: first.keyFor(list[2]!), Body: Buffer.from('someone else') }));

  proxy.requests.length = 0;
  const { log, text } = capture();
  const again = uploader(log, { keyTemplate: '{prefix}/{host}/restart/{file}' });
  t.teardown(() => again.close());
  const outcomes = await Promise.all(list.map((f) => again.upload(f).then((r) => r.outcome, (e: S3UploadError) => e.code)));
  t.same(outcomes, ['already-uploaded', 'found-in-store', 'ERR_MIRRORCAP_S3_KEY_EXISTS']);
  t.equal(proxy.uploads().length, 0, 'no bytes uploaded again');
  t.equal(proxy.requests.filter((r) => r.method === 'HEAD').length, 2, 'HEAD only for the files without a marker');
  t.ok(existsSync(markerPath(list[1]!.path)), 'the marker of the found file is written');
  t.notOk(existsSync(markerPath(list[2]!.path)), 'no marker for the refused one');
  t.equal((await objectBytes(direct, BUCKET, again.keyFor(list[2]!))).toString(), 'someone else', 'the other object is left alone');
  t.match(String(events(text(), 's3_upload_failed')[0]?.msg), /two appliances share \{host\} "probe-1"/);
  t.equal(again.skippedFiles, 2);
  t.equal(again.uploadedFiles, 0);

  // Delete-after-upload: the caller deletes once the upload resolved; marker first, then the file.
  await deleteWithMarker(list[0]!.path);
  t.notOk(existsSync(list[0]!.path) || existsSync(markerPath(list[0]!.path)), 'file and marker gone');
  await deleteWithMarker(list[0]!.path);
  t.pass('deleting again is fine');
  t.ok((await objectBytes(direct, BUCKET, again.keyFor(list[0]!))).length === 40_000, 'the object stays');
});

t.test('local problems reject at once: a missing file, a file deleted while it waited', async (t) => {
  const { log } = capture();
  const up = new S3Uploader(s3Settings({ url: 's3://gate-bucket', endpoint: proxy.endpoint, host: 'probe-1' }), log, { retry: RETRY });
  t.teardown(() => up.close());
  const missing = { path: join(root, 'nope.pcap'), session: 'web', vni: 1, start: START };
  await t.rejects(up.upload(missing), { name: 'S3UploadError', code: 'ENOENT', path: missing.path });
  t.equal(up.failures.get('ENOENT'), 1);
  // The bucket is missing: the first file is refused and the second waits behind it; then it is deleted.
  const [a, b] = await files([10_000, 10_000]);
  const first = up.upload(a!);
  await waitFor(() => (up.failures.get('NoSuchBucket') ?? 0) >= 1, 10_000, 'a refusal');
  const second = up.upload(b!).then((r) => r.outcome, (e: S3UploadError) => e.code);
  await waitFor(() => up.pending === 2, 5000, 'the second file queued');
  await unlink(b!.path);
  await direct.send(new CreateBucketCommand({ Bucket: 'gate-bucket' }));
  t.equal((await first).outcome, 'uploaded', 'the first goes up once the bucket exists');
  t.equal(await second, 'ENOENT', 'the deleted one is reported failed, not retried');
  t.equal(up.pending, 0);
});

t.test('close: what waits is refused, what runs is aborted, nothing is reported done that was not', async (t) => {
  const { log } = capture();
  const up = uploader(log, { keyTemplate: '{prefix}/{host}/closing/{file}', concurrency: 1 });
  proxy.requests.length = 0;
  proxy.fault = (r) => (r.method === 'PUT' ? 'stall' : undefined);
  const list = await files([10_000, 10_000, 10_000]);
  const outcomes = list.map((f) => up.upload(f).then((r) => r.outcome, (e: S3UploadError) => e.code));
  t.equal(up.upload(list[0]!), up.upload(list[0]!), 'a file handed over twice is one upload');
  await waitFor(() => proxy.requests.some((r) => r.method === 'PUT' && keyOf(r) === up.keyFor(list[0]!)), 10_000, 'the first PUT');
  await up.close(100);
  proxy.fault = null;
  t.same(await Promise.all(outcomes), ['ERR_MIRRORCAP_S3_CLOSED', 'ERR_MIRRORCAP_S3_CLOSED', 'ERR_MIRRORCAP_S3_CLOSED'], 'all three refused');
  t.equal(await objectHead(direct, BUCKET, up.keyFor(list[0]!)), null, 'the stalled one left no object');
  for (const f of list) t.notOk(existsSync(markerPath(f.path)), 'and no marker');
  await t.rejects(up.upload(list[0]!), { code: 'ERR_MIRRORCAP_S3_CLOSED' });

  // close() while files are still being looked at (stat, marker): they are refused too, none hangs.
  const late = uploader(capture().log, { keyTemplate: '{prefix}/{host}/closing/{file}' });
  const more = await files([1000, 1000]);
  const racing = more.map((f) => late.upload(f).then((r) => r.outcome, (e: S3UploadError) => e.code));
  await late.close();
  t.same(await Promise.all(racing), ['ERR_MIRRORCAP_S3_CLOSED', 'ERR_MIRRORCAP_S3_CLOSED']);
});

t.test('credentials never appear in logs, errors or counters', async (t) => {
  const keyId = 'AKIAQX7TESTKEY4MCAP0';
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzMirrorcap';
  useTestCredentials(keyId, secret);
  t.teardown(() => useTestCredentials());
  const { log, text } = capture();
  const up = uploader(log, { keyTemplate: '{prefix}/{host}/creds/{file}' });
  const list = await files([1000]);
  const pending = up.upload(list[0]!).catch((e: Error) => e);
  await waitFor(() => (up.failures.get('InvalidAccessKeyId') ?? 0) >= 2, 20_000, 'refusals');
  const refused = events(text(), 's3_refused');
  t.equal(refused.length, 1, 'logged once');
  t.match(String(refused[0]!.msg), /access key id in use: check AWS_ACCESS_KEY_ID/);
  await up.close();
  const err = await pending;
  const everything = [text(), String(err), JSON.stringify(err), JSON.stringify([...up.failures]), JSON.stringify({ pending: up.pending, files: up.uploadedFiles, retries: up.retries, key: up.keyFor(list[0]!) })].join('\n');
  t.notOk(everything.includes(keyId), 'the access key id is nowhere');
  t.notOk(everything.includes(secret), 'the secret is nowhere');
  // The SDK's own error does carry the key id: what we log and throw is what keeps it out.
  const bad = new S3Client({ endpoint: `http://127.0.0.1:${server.port}`, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: keyId, secretAccessKey: secret } });
  const raw = await bad.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'x', Body: 'x' })).then(
    () => null,
    (e: unknown) => e,
  );
  bad.destroy();
  t.match(raw, { name: 'InvalidAccessKeyId', AWSAccessKeyId: keyId }, 'the raw SDK error names the key id');
  t.equal(redact(`bad key ${keyId} and ${secret}`), 'bad key [redacted] and [redacted]', 'redact() hides key-shaped text');
});

t.test('kill -9 between finish and upload: the next start uploads what was left, and nothing twice', async (t) => {
  const list = await files([30_000, 40_000, 50_000, 60_000], 'kill');
  const dir = join(list[0]!.path, '..');
  const child = fileURLToPath(new URL('./s3-child.js', import.meta.url));
  const name = (i: number): string => list[i]!.path.split('/').pop()!;
  proxy.requests.length = 0;
  // The second file: stored by the server, its answer never delivered; then the process dies.
  proxy.fault = (r) => (r.method === 'PUT' && r.url.includes(name(1)) ? 'hold' : undefined);
  const run = (): { done: Promise<{ code: number | null; signal: string | null; out: string }>; kill: () => void } => {
    const p = spawn(process.execPath, [child, dir, proxy.endpoint, BUCKET], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.resume();
    return { done: new Promise((resolve) => p.on('close', (code, signal) => resolve({ code, signal, out }))), kill: () => p.kill('SIGKILL') };
  };
  const first = run();
  proxy.onHeld = () => first.kill();
  const killed = await first.done;
  proxy.fault = null;
  proxy.onHeld = null;
  t.equal(killed.signal, 'SIGKILL', 'killed');
  t.same(killed.out.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as UploadResult).outcome), ['uploaded'], 'one file reported done before the kill');
  t.ok(existsSync(markerPath(list[0]!.path)) && !existsSync(markerPath(list[1]!.path)), 'the second file is stored but has no marker');

  proxy.requests.length = 0;
  const second = await run().done;
  t.equal(second.code, 0, 'the next start exits cleanly');
  const byName = new Map(second.out.trim().split('\n').map((l) => JSON.parse(l) as UploadResult).map((r) => [r.path.split('/').pop()!, r]));
  t.same([0, 1, 2, 3].map((i) => byName.get(name(i))?.outcome), ['already-uploaded', 'found-in-store', 'uploaded', 'uploaded']);
  t.same(proxy.uploads().map((r) => keyOf(r).split('/').pop()).sort(), [name(2), name(3)], 'only the two files never uploaded are sent');
  await sameBytes(t, [...byName.values()]);
  t.same(await listKeys(direct, BUCKET).then((k) => k.filter((x) => x.startsWith('kill/'))), [0, 1, 2, 3].map((i) => `kill/child/kill/2026/11/26/${name(i)}`), 'each file once');
});
