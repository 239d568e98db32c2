/**
 * A process that uploads every .pcap file of a folder, one at a time, as the appliance's S3
 * step would after a start: the kill -9 test runs it, kills it mid-way, and runs it again.
 *
 *   node dist/test/finish/s3-child.js DIR ENDPOINT BUCKET
 *
 * Prints one JSON line per finished upload on stdout; logs (JSON) on stderr.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { S3Uploader } from '../../src/finish/s3.js';
import { s3Settings } from '../../src/finish/s3-settings.js';
import { useTestCredentials } from '../lib/s3.js';

const [dir, endpoint, bucket] = process.argv.slice(2) as [string, string, string];
useTestCredentials();
const uploader = new S3Uploader(s3Settings({ url: `s3://${bucket}/kill`, endpoint, host: 'child', concurrency: 1 }), pino(pino.destination(2)), { retry: { baseMs: 50, maxMs: 200, permanentMs: 500 } });
await uploader.start();
const files = readdirSync(dir).filter((n) => n.endsWith('.pcap')).sort();
await Promise.all(
  files.map(async (name) => {
    const r = await uploader.upload({ path: join(dir, name), session: 'kill', vni: 7, start: Date.UTC(2026, 10, 26, 16, 45) / 1000 });
    process.stdout.write(`${JSON.stringify(r)}\n`);
  }),
);
await uploader.close();
