/**
 * deploy/prometheus/ checked by Prometheus's own promtool: the scrape config (and its
 * commented EC2 service-discovery variant) and the alert rules are valid, the rule unit
 * tests pass, every alert has a test that makes it fire and one that keeps it quiet, and
 * every mirrorcap_ metric an alert reads is one the appliance exports.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { App } from '../../src/app.js';
import { OPTIONS, parseFlags, resolveConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { haveTool, run } from '../lib/tools.js';

const DIR = fileURLToPath(new URL('../../../deploy/prometheus/', import.meta.url));
const skip = haveTool('promtool') ? false : 'promtool not installed (apt-get install prometheus; .ci/run does)';

async function promtool(...args: string[]): Promise<{ status: number; output: string }> {
  const r = await run('promtool', args, { cwd: DIR });
  return { status: r.code, output: `${r.stdout}${r.stderr}` };
}

interface Rule {
  alert: string;
  expr: string;
}
interface AlertTest {
  alertname: string;
  exp_alerts: unknown[];
}
const rules = (parse(await readFile(join(DIR, 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules);
const tests = (parse(await readFile(join(DIR, 'alerts.test.yml'), 'utf8')) as { tests: Array<{ alert_rule_test: AlertTest[] }> }).tests.flatMap(
  (x) => x.alert_rule_test,
);

t.test('promtool check config: the shipped scrape config', { skip }, async (t) => {
  const r = await promtool('check', 'config', 'prometheus.yml');
  t.equal(r.status, 0, r.output);
});

t.test('promtool check config: the commented EC2 service discovery, uncommented', { skip }, async (t) => {
  const lines = (await readFile(join(DIR, 'prometheus.yml'), 'utf8')).split('\n');
  const start = lines.findIndex((l) => /^\s*# ec2_sd_configs:/.test(l));
  t.ok(start > 0, 'the example is there');
  const indent = /^(\s*)#/.exec(lines[start]!)![1]!;
  let i = start;
  for (; i < lines.length && lines[i]!.startsWith(`${indent}#`); i++) lines[i] = indent + lines[i]!.slice(indent.length + 2);
  t.ok(i - start > 5, `${i - start} lines uncommented`);
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-prom-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'prometheus.yml'), lines.join('\n'));
  await copyFile(join(DIR, 'alerts.yml'), join(dir, 'alerts.yml'));
  const r = await run('promtool', ['check', 'config', 'prometheus.yml'], { cwd: dir });
  t.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  const job = (parse(lines.join('\n')) as { scrape_configs: Array<{ ec2_sd_configs?: Array<{ port: number }> }> }).scrape_configs[0]!;
  t.equal(job.ec2_sd_configs?.[0]?.port, portOf(OPTIONS.find((o) => o.name === 'http')!.default), 'discovered instances are scraped on the default HTTP port');
});

t.test('promtool check config: the commented https variant (--http-tls-cert), uncommented', { skip }, async (t) => {
  const text = await readFile(join(DIR, 'prometheus.yml'), 'utf8');
  const https = text.replace(/^(\s*)# (scheme: https|tls_config:)$/gm, '$1$2').replace(/^(\s*)#   (ca_file: .*)$/gm, '$1  $2');
  const job = (parse(https) as { scrape_configs: Array<{ scheme?: string; tls_config?: { ca_file?: string } }> }).scrape_configs[0]!;
  t.equal(job.scheme, 'https');
  t.ok(job.tls_config?.ca_file, 'with a CA file');
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-prom-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'prometheus.yml'), https);
  await copyFile(join(DIR, 'alerts.yml'), join(dir, 'alerts.yml'));
  const r = await run('promtool', ['check', 'config', 'prometheus.yml'], { cwd: dir });
  t.equal(r.code, 0, `${r.stdout}${r.stderr}`);
});

t.test('the scrape job is the one the alerts name, on the default HTTP port', async (t) => {
  const config = parse(await readFile(join(DIR, 'prometheus.yml'), 'utf8')) as {
    rule_files: string[];
    scrape_configs: Array<{ job_name: string; metrics_path?: string; static_configs: Array<{ targets: string[] }> }>;
  };
  const job = config.scrape_configs[0]!;
  t.equal(job.metrics_path ?? '/metrics', '/metrics');
  t.match(rules.find((r) => r.alert === 'MirrorcapDown')?.expr ?? '', `job="${job.job_name}"`);
  t.equal(portOf(job.static_configs[0]!.targets[0]!), portOf(OPTIONS.find((o) => o.name === 'http')!.default));
  t.same(config.rule_files, ['alerts.yml']);
});

t.test('promtool check rules', { skip }, async (t) => {
  const r = await promtool('check', 'rules', 'alerts.yml');
  t.equal(r.status, 0, r.output);
  t.match(r.output, `SUCCESS: ${rules.length} rules found`);
});

t.test('promtool test rules: every alert fires on its series and stays quiet on the others', { skip }, async (t) => {
  const r = await promtool('test', 'rules', 'alerts.test.yml');
  t.equal(r.status, 0, r.output);
  for (const { alert } of rules) {
    const mine = tests.filter((x) => x.alertname === alert);
    t.ok(mine.some((x) => x.exp_alerts.length > 0), `${alert} has a test where it fires`);
    t.ok(mine.some((x) => x.exp_alerts.length === 0), `${alert} has a test where it does not`);
  }
});

t.test('every mirrorcap_ metric an alert reads is exported', async (t) => {
  const app = new App(resolveConfig(parseFlags([]).flags, {}), createLogger('silent'), 'test');
  const exported = new Set(app.metrics.register.getMetricsAsArray().map((m) => m.name));
  const used = new Set(rules.flatMap((r) => r.expr.match(/mirrorcap_\w+/g) ?? []));
  t.ok(used.size >= 7, [...used].join(', '));
  for (const m of used) t.ok(exported.has(m), `${m} is exported`);
});

function portOf(endpoint: string): number {
  return Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
}
