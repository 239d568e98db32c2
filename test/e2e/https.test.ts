/**
 * --http-tls-cert/--http-tls-key: metrics, health and the API over HTTPS, checked with curl
 * (OpenSSL's TLS, verifying our certificate against the CA file) and scraped by a real
 * Prometheus with the https variant of the scrape config; SIGHUP serves a renewed
 * certificate, and a certificate that cannot be read keeps the running one.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { stringify } from 'yaml';
import { httpGet, startAppliance, waitFor } from '../lib/appliance.js';
import { freePort } from '../lib/ports.js';
import { haveTool, run } from '../lib/tools.js';

const skip = haveTool('openssl') && haveTool('curl') ? false : 'openssl or curl not installed';
const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-https-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));

/** A self-signed certificate for 127.0.0.1 (its own CA file), written as NAME.crt / NAME.key. */
async function certificate(name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const r = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert]);
  if (r.code !== 0) throw new Error(r.stderr);
  return { cert, key };
}

/** curl's exit status and body for GET path, trusting only `ca`. */
async function curl(port: number, path: string, ca: string, scheme = 'https'): Promise<{ code: number; body: string }> {
  const r = await run('curl', ['-sS', '--max-time', '5', '--cacert', ca, '-o', '-', '-w', '\n%{http_code}', `${scheme}://127.0.0.1:${port}${path}`]);
  return { code: r.code, body: r.stdout };
}

t.test('HTTPS: curl verifies our certificate; SIGHUP serves a renewed one; an unreadable one keeps the running one', { skip }, async (t) => {
  const first = await certificate('first');
  const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
  const copy = async (from: { cert: string; key: string }): Promise<void> => {
    await run('cp', [from.cert, live.cert]);
    await run('cp', [from.key, live.key]);
  };
  await copy(first);
  const app = await startAppliance(['--out', join(dir, 'out'), '--http-tls-cert', live.cert, '--http-tls-key', live.key]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const metrics = await curl(app.httpPort, '/metrics', first.cert);
  t.equal(metrics.code, 0, 'curl trusts the certificate');
  t.match(metrics.body, /mirrorcap_build_info\{/);
  t.match(metrics.body, /\n200$/);
  t.match((await curl(app.httpPort, '/readyz', first.cert)).body, /\n200$/, '/readyz over HTTPS');
  t.not((await curl(app.httpPort, '/metrics', first.cert, 'http')).code, 0, 'plain HTTP is not answered');

  const second = await certificate('second');
  await copy(second);
  app.proc.kill('SIGHUP');
  await waitFor(() => app.logs.some((l) => l.event === 'tls_reloaded'), 5000, 'reloaded');
  t.equal((await curl(app.httpPort, '/healthz', second.cert)).code, 0, 'the renewed certificate is served');
  t.equal((await curl(app.httpPort, '/healthz', first.cert)).code, 60, 'the old one no longer (curl 60: not trusted)');

  await writeFile(live.key, 'not a key');
  app.proc.kill('SIGHUP');
  await waitFor(() => app.logs.some((l) => l.event === 'tls_reload_failed'), 5000, 'refused');
  t.equal((await curl(app.httpPort, '/healthz', second.cert)).code, 0, 'the running certificate stays');
  t.equal(await app.stop(), 0);
});

t.test('a real Prometheus scrapes over HTTPS with the scrape config’s tls_config', { skip: skip || (haveTool('prometheus') ? false : 'prometheus not installed') }, async (t) => {
  const tls = await certificate('prom');
  const app = await startAppliance(['--out', join(dir, 'out-prom'), '--http-tls-cert', tls.cert, '--http-tls-key', tls.key]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const config = {
    global: { scrape_interval: '1s' },
    scrape_configs: [{ job_name: 'mirrorcap', scheme: 'https', tls_config: { ca_file: tls.cert }, static_configs: [{ targets: [`127.0.0.1:${app.httpPort}`] }] }],
  };
  await writeFile(join(dir, 'prometheus.yml'), stringify(config));
  const promPort = await freePort();
  const prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'], { stdio: 'ignore' });
  t.teardown(() => prom.kill('SIGTERM'));
  const value = async (q: string): Promise<string | null> => {
    const r = await httpGet(promPort, `/api/v1/query?query=${encodeURIComponent(q)}`).catch(() => null);
    if (r === null || r.status !== 200) return null;
    const v = (JSON.parse(r.body) as { data: { result: Array<{ value: [number, string] }> } }).data.result[0];
    return v?.value[1] ?? null;
  };
  await waitFor(async () => (await value('up{job="mirrorcap"}')) === '1', 30_000, 'the https target is up');
  t.equal(await value('mirrorcap_build_info{job="mirrorcap"}'), '1', 'and its metrics stored');
  t.equal(await app.stop(), 0);
});
