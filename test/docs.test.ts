/**
 * The documentation is part of the product: the README stays short and links every page of
 * docs/, and the tables of docs/ follow the code (every option, every metric).
 */
import { readdir, readFile } from 'node:fs/promises';
import t from 'tap';
import { App } from '../src/app.js';
import { OPTIONS, envName, parseFlags, resolveConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';

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
