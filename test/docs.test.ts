/**
 * The documentation is part of the product: the README stays short and links every page of
 * docs/, and the tables of docs/ follow the code (every option, every metric).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { App } from '../src/app.js';
import { OPTIONS, envName, optionLimits, optionsHelp, parseFlags, resolveConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { httpGet, metricValue, startAppliance, waitFor } from './lib/appliance.js';
import { tsharkFrames } from './lib/tshark.js';
import { tool } from './lib/tools.js';

const root = new URL('../../', import.meta.url);
const read = (path: string): Promise<string> => readFile(new URL(path, root), 'utf8');
const readme = await read('README.md');

t.test('the README stays under 12 KiB and links every page of docs/', async (t) => {
  t.ok(Buffer.byteLength(readme) < 12 * 1024, `README.md is ${Buffer.byteLength(readme)} bytes`);
  const pages = (await readdir(new URL('docs/', root))).filter((f) => f.endsWith('.md'));
  for (const p of ['configuration.md', 'metrics.md', 'operations.md', 'deploy.md', 'performance.md', 'architecture.md']) t.ok(pages.includes(p), `docs/${p} exists`);
  for (const p of pages) t.match(readme, `(docs/${p}`, `README links docs/${p}`);
});

t.test('relative links between the pages point at files that exist', async (t) => {
  const pages = (await readdir(new URL('docs/', root))).filter((f) => f.endsWith('.md'));
  const files = new Set(pages);
  for (const p of pages) {
    for (const m of (await read(`docs/${p}`)).matchAll(/\]\(([a-z-]+\.md)(#[a-z0-9-]+)?\)/g)) t.ok(files.has(m[1]!), `${p} → ${m[1]}`);
  }
});

t.test('every option is in the configuration table with its environment name and default', async (t) => {
  const doc = await read('docs/configuration.md');
  for (const o of OPTIONS) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`--${o.name}\` |`));
    t.ok(row, `--${o.name} has a row`);
    t.match(row ?? '', `\`${envName(o.name)}\``, `--${o.name} row names ${envName(o.name)}`);
    if (o.default !== '' && o.name !== 'allow') t.match(row ?? '', `\`${o.default}\``, `--${o.name} row shows the default ${o.default}`);
  }
});

t.test('every option\'s limits (min, max, 0 for off) are in its configuration row and in --help', async (t) => {
  const doc = await read('docs/configuration.md');
  const help = optionsHelp(OPTIONS);
  const limited = OPTIONS.filter((o) => o.min !== undefined || o.max !== undefined);
  t.ok(limited.length >= 8, `${limited.length} options have limits`);
  for (const o of limited) {
    const limits = optionLimits(o);
    t.ok(limits !== '', `--${o.name}: its limits in words`);
    const row = doc.split('\n').find((l) => l.startsWith(`| \`--${o.name}\` |`)) ?? '';
    t.ok(row.includes(limits), `--${o.name} row says "${limits}"`);
    const entry = help.split('\n').find((l) => l.startsWith(`  --${o.name} `)) ?? '';
    t.ok(entry.includes(limits), `--help for --${o.name} says "${limits}"`);
  }
  t.equal(optionLimits(OPTIONS.find((o) => o.name === 'rotate-size')!), 'at least 4KiB, or 0 for off');
  t.equal(optionLimits(OPTIONS.find((o) => o.name === 'snaplen')!), 'from 64 to 262144');
  t.equal(optionLimits(OPTIONS.find((o) => o.name === 'flush-interval')!), 'at least 10ms');
});

t.test('every mirrorcap_ metric is in the metrics table', async (t) => {
  const doc = await read('docs/metrics.md');
  const app = new App(resolveConfig(parseFlags([]).flags, {}), createLogger('silent'), 'test');
  const names = app.metrics.register.getMetricsAsArray().map((m) => m.name).filter((n) => n.startsWith('mirrorcap_'));
  t.ok(names.length > 10);
  for (const n of names) t.match(doc, `| \`${n}\` |`, `${n} documented`);
});

t.test('the README shows the quick start and test commands CI runs', async (t) => {
  t.match(readme, /npm ci\nnpm start/);
  t.match(readme, /npm test/);
});

t.test('the quick start does what it says: replay, a .pcap.part until SIGUSR1, the start line names the ports', async (t) => {
  const repo = fileURLToPath(root);
  const command = /^node dist\/src\/main\.js replay .*$/m.exec(readme)?.[0];
  t.ok(command, 'the README shows a replay command');
  t.match(command ?? '', / --target 127\.0\.0\.1:4789 /);
  const out = await mkdtemp(join(tmpdir(), 'mirrorcap-readme-'));
  const app = await startAppliance(['--out', out]);
  t.teardown(() => app.proc.kill('SIGKILL'));
  const start = app.logs.find((l) => l.event === 'start');
  t.ok(readme.includes('The `start` log line says which ports mirrorcap bound (`udpPort`, `httpPort`)'), 'the README names the start line and its fields');
  t.ok(typeof start?.udpPort === 'number' && typeof start.httpPort === 'number', 'the start line has udpPort and httpPort');
  const args = command!.split(' ').slice(2).map((a) => (a === '127.0.0.1:4789' ? `127.0.0.1:${app.udpPort}` : a));
  const replay = spawnSync(process.execPath, [join(repo, 'dist', 'src', 'main.js'), ...args], { cwd: repo, encoding: 'utf8', timeout: 60_000 });
  t.equal(replay.status, 0, replay.stderr);
  const frames = (await tsharkFrames(join(repo, 'pcaps', 'ipv4.pcap'))).length;
  t.ok(readme.includes(`Its ${frames} frames appear in \`captures/vni-123/\``), `the README says ${frames} frames`);
  const duration = Number(/Capture duration:\s+([\d.]+) seconds/.exec(await tool('capinfos', ['-u', join(repo, 'pcaps', 'ipv4.pcap')]))?.[1]);
  t.ok(readme.includes(`${Math.round(duration)} s for this one`), `the README says the capture's pace takes ${Math.round(duration)} s`);
  const written = async (): Promise<number | undefined> => metricValue((await httpGet(app.httpPort, '/metrics')).body, 'mirrorcap_written_packets_total', { session: 'vni-123' });
  await waitFor(async () => (await written()) === frames, 5000, 'written');
  const dir = join(out, 'vni-123');
  const open = await readdir(dir);
  t.match(open, [/^vni-123-\d{8}T\d{6}Z-000000\.pcap\.part$/], 'one .pcap.part while the file is open');
  t.equal((await tsharkFrames(join(dir, open[0]!))).length, frames, 'tshark reads it as it is');
  app.proc.kill('SIGUSR1');
  await waitFor(() => app.logs.some((l) => l.event === 'file_rotated'), 5000, 'rotated');
  // Beside it, once written, its index sidecar (.pcap.idx, .pcap.idx.tmp while written): not a capture.
  t.same((await readdir(dir)).filter((f) => !/\.idx(\.tmp)?$/.test(f)), [open[0]!.replace(/\.part$/, '')], 'SIGUSR1 makes it a .pcap');
  t.equal(await app.stop(), 0);
});
