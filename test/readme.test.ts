/** The README is part of the product: every option and every metric must be in it. */
import { readFile } from 'node:fs/promises';
import t from 'tap';
import { App } from '../src/app.js';
import { OPTIONS, envName, optionLimits, optionsHelp, parseFlags, resolveConfig } from '../src/config.js';
import { createLogger } from '../src/control/log.js';

const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');

t.test('every option is in the configuration table with its environment name and default', async (t) => {
  for (const o of OPTIONS) {
    const row = readme.split('\n').find((l) => l.startsWith(`| \`--${o.name}\` |`));
    t.ok(row, `--${o.name} has a row`);
    t.match(row ?? '', `\`${envName(o.name)}\``, `--${o.name} row names ${envName(o.name)}`);
    if (o.default !== '' && o.name !== 'allow') t.match(row ?? '', `\`${o.default}\``, `--${o.name} row shows the default ${o.default}`);
  }
});

t.test('every option\'s limits (min, max, 0 for off) are in its README row and in --help', async (t) => {
  const help = optionsHelp(OPTIONS);
  const limited = OPTIONS.filter((o) => o.min !== undefined || o.max !== undefined);
  t.ok(limited.length >= 8, `${limited.length} options have limits`);
  for (const o of limited) {
    const limits = optionLimits(o);
    t.ok(limits !== '', `--${o.name}: its limits in words`);
    const row = readme.split('\n').find((l) => l.startsWith(`| \`--${o.name}\` |`)) ?? '';
    t.ok(row.includes(limits), `--${o.name} row says "${limits}"`);
    const entry = help.split('\n').find((l) => l.startsWith(`  --${o.name} `)) ?? '';
    t.ok(entry.includes(limits), `--help for --${o.name} says "${limits}"`);
  }
  t.equal(optionLimits(OPTIONS.find((o) => o.name === 'rotate-size')!), 'at least 4KiB, or 0 for off');
  t.equal(optionLimits(OPTIONS.find((o) => o.name === 'snaplen')!), 'from 64 to 262144');
  t.equal(optionLimits(OPTIONS.find((o) => o.name === 'flush-interval')!), 'at least 10ms');
});

t.test('every mirrorcap_ metric is in the metrics table', async (t) => {
  const app = new App(resolveConfig(parseFlags([]).flags, {}), createLogger('silent'), 'test');
  const names = app.metrics.register.getMetricsAsArray().map((m) => m.name).filter((n) => n.startsWith('mirrorcap_'));
  t.ok(names.length > 10);
  for (const n of names) t.match(readme, `| \`${n}\` |`, `${n} documented`);
});

t.test('the README shows the quick start and test commands CI runs', async (t) => {
  t.match(readme, /npm ci\nnpm start/);
  t.match(readme, /npm test/);
});
