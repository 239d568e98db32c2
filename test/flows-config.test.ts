/** The flow options of the OPTIONS table: flags, environment, config file, per session, and their errors. */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, parseFlags, resolveConfig, sessionSettings, type Config } from '../src/config.js';
import { DEFAULT_FLOW_FORMAT } from '../src/flowformat.js';

const resolve = (argv: string[], env: NodeJS.ProcessEnv = {}): Config => resolveConfig(parseFlags(argv).flags, env);

async function file(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-flows-config-'));
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

t.test('defaults: flows off, 60 s, the version 2 fields, 1,000,000 flows', async (t) => {
  const c = resolve([]);
  t.equal(c.flows, false);
  t.equal(c.flowInterval, 60);
  t.equal(c.flowFormat.header, 'version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status');
  t.equal(c.flowFormat.version, 2);
  t.equal(c.maxFlows, 1_000_000);
  t.equal(c.flowRing, 65536);
  t.equal(c.nodeName, null);
  t.same(c.flowFields, { values: {}, addresses: [] });
  t.same(sessionSettings(c).flows, false, 'flows is a per-session setting');
});

t.test('flags and environment', async (t) => {
  const c = resolve(
    ['--flows', '--flow-interval', '10s', '--flow-format', '${version} ${srcaddr} ${tcp-flags} ${region}', '--flow-fields', 'account-id=123456789012, region=eu-west-1'],
    { MIRRORCAP_MAX_FLOWS: '5000', MIRRORCAP_NODE_NAME: 'probe-a' },
  );
  t.equal(c.flows, true);
  t.equal(c.flowInterval, 10);
  t.same(c.flowFormat.fields, ['version', 'srcaddr', 'tcp-flags', 'region']);
  t.equal(c.flowFormat.version, 4, 'the highest version among the fields (region is v4)');
  t.same(c.flowFields.values, { 'account-id': '123456789012', region: 'eu-west-1' });
  t.equal(c.maxFlows, 5000);
  t.equal(c.nodeName, 'probe-a');
  t.equal(resolve(['--flow-format', DEFAULT_FLOW_FORMAT]).flowFormat.header, resolve([]).flowFormat.header);
});

t.test('bad flow values: one ConfigError naming the option and what is wrong', async (t) => {
  const bad: Array<[string[], RegExp]> = [
    [['--flow-format', '${version} ${nonsense}'], /flow-format.*unknown flow log field "nonsense"/],
    [['--flow-format', 'srcaddr'], /flow-format.*not of the form/],
    [['--flow-format', '${srcaddr} ${srcaddr}'], /appears twice/],
    [['--flow-fields', 'account-id=12'], /flow-fields.*12-digit/],
    [['--flow-fields', 'region=../../etc'], /flow-fields.*region/],
    [['--flow-fields', 'colour=blue'], /unknown key "colour"/],
    [['--flow-fields', 'addresses=10.0.0.300'], /addresses/],
    [['--flow-interval', '0.5'], /flow-interval/],
    [['--max-flows', '0'], /max-flows/],
  ];
  for (const [argv, msg] of bad) {
    t.throws(() => resolve(argv), ConfigError, argv.join(' '));
    t.throws(() => resolve(argv), { message: msg }, argv.join(' '));
  }
});

t.test('per session: flows and flow-fields, adding to the top-level fields', async (t) => {
  const path = await file(
    'c.yaml',
    [
      'flow-fields: { account-id: 012345678901, region: us-east-1 }',
      'sessions:',
      '  - { vni: 1, name: web, flows: true, flow-fields: { interface-id: eni-0a1b2c3d4e5f60718, addresses: [10.0.1.25, "2001:DB8::25"] } }',
      '  - { vni: 2, name: db }',
      '  - { vni: 3, name: other, flow-fields: { region: eu-west-1 } }',
    ].join('\n'),
  );
  const c = resolve(['--config', path]);
  const [web, db, other] = c.sessions;
  t.equal(web!.flows, true);
  t.equal(db!.flows, false, 'off unless the session or the top level turns it on');
  t.same(web!.flowFields.values, { 'account-id': '012345678901', region: 'us-east-1', 'interface-id': 'eni-0a1b2c3d4e5f60718' }, 'a YAML number account id keeps its 12 digits');
  t.same(web!.flowFields.addresses, ['10.0.1.25', '2001:db8::25'], 'addresses in canonical form');
  t.same(db!.flowFields.values, { 'account-id': '012345678901', region: 'us-east-1' });
  t.equal(other!.flowFields.values.region, 'eu-west-1', "the session's own value wins");
  t.ok(resolve(['--config', path, '--flows']).sessions.every((s) => s.flows), '--flows turns every session on');
});

t.test('the session name "flows" is the flow-log folder', async (t) => {
  const path = await file('c.yaml', 'sessions:\n  - { vni: 1, name: flows }\n');
  t.throws(() => resolve(['--config', path]), { message: /sessions\[0\]\.name.*not "flows"/ });
  const bad = await file('d.yaml', 'sessions:\n  - { vni: 1, name: web, flow-fields: { account-id: "12" } }\n');
  t.throws(() => resolve(['--config', bad]), { message: /sessions\[0\]\.flow-fields.*account-id/ });
});
