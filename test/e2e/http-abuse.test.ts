/**
 * The control plane under a slow or abusive client: malformed requests get a 4xx, idle or
 * slow connections are cut, a flood of connections is capped, and the scrape and health
 * endpoints keep answering throughout.
 */
import { connect, type Socket } from 'node:net';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { httpGet, startAppliance } from '../lib/appliance.js';

function raw(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.end(payload));
    let out = '';
    s.on('data', (d) => (out += d.toString()));
    s.on('close', () => resolve(out));
    s.on('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('no answer')));
  });
}

t.test('malformed requests, slow clients and a connection flood do not take the control plane down', async (t) => {
  const app = await startAppliance(['--out', join(await mkdtemp(join(tmpdir(), 'mirrorcap-http-')), 'c')]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const port = app.httpPort;

  t.match(await raw(port, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/, 'not HTTP: 400');
  t.match(await raw(port, `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n${'X-Big: y\r\n'.repeat(2000)}\r\n`), /^HTTP\/1\.1 431/, 'oversized headers: 431');
  t.match(await raw(port, 'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n'), /^HTTP\/1\.1 405/, 'wrong method: 405');
  t.match(await raw(port, 'GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 404/, 'unknown path: 404');

  // A slowloris client: headers that never end. The server cuts it; others are served meanwhile.
  const started = Date.now();
  const slow = new Promise<number>((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'));
    const drip = setInterval(() => s.writable && s.write('X-Slow: 1\r\n'), 500);
    s.on('close', () => {
      clearInterval(drip);
      resolve(Date.now() - started);
    });
    s.on('error', () => undefined);
    s.resume(); // read the server's answer, or its end never arrives
  });
  t.equal((await httpGet(port, '/healthz')).status, 200, 'served while a slow client dawdles');
  const cutAfter = await slow;
  t.ok(cutAfter < 15_000, `the slow client was cut after ${cutAfter} ms`);

  // A flood: far more idle connections than the cap; the server stays up and recovers.
  const flood: Socket[] = [];
  await Promise.all(
    Array.from({ length: 400 }, () => new Promise<void>((resolve) => {
      const s = connect(port, '127.0.0.1', () => resolve());
      s.resume();
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      flood.push(s);
    })),
  );
  for (const s of flood) s.destroy();
  await new Promise((r) => setTimeout(r, 200));
  const after = Date.now();
  t.equal((await httpGet(port, '/metrics')).status, 200, '/metrics answers after the flood');
  t.ok(Date.now() - after < 1000, 'and answers quickly');
  t.equal((await httpGet(port, '/readyz')).status, 200);
  t.equal(app.proc.exitCode, null, 'the process is still running');
  t.equal(await app.stop(), 0);
});
