/**
 * deploy/mirrorcap.service and deploy/sysctl.d/: systemd-analyze verify (when installed)
 * on the unit as shipped and with its interface-source alternative switched on; the keys
 * that matter read back from the file; the sysctl values at least the default --recv-buffer.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { OPTIONS, envName } from '../../src/config.js';
import { parseDuration, parseSize } from '../../src/units.js';
import { execForm, parseDockerfile } from '../lib/dockerfile.js';
import { haveTool, run } from '../lib/tools.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const unitText = await readFile(join(ROOT, 'deploy/mirrorcap.service'), 'utf8');
const option = (name: string): string => OPTIONS.find((o) => o.name === name)!.default;
const hasAnalyze = haveTool('systemd-analyze');

/** Every `Key=value` of a section, in order (a key may repeat). */
function keys(text: string, section: string): Array<[string, string]> {
  const body = new RegExp(`^\\[${section}\\]\\n([\\s\\S]*?)(?=^\\[|(?![\\s\\S]))`, 'm').exec(text)?.[1] ?? '';
  return body
    .split('\n')
    .filter((l) => /^\w+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}
const service = keys(unitText, 'Service');
const one = (k: string): string | undefined => service.filter(([key]) => key === k).at(-1)?.[1];
const envs = new Map(service.filter(([k]) => k === 'Environment').map(([, v]) => v.split('=') as [string, string]));

async function verify(t: Test, text: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-unit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // verify checks that ExecStart's program exists: point it at this machine's node.
  const here = existsSync('/usr/bin/node') ? text : text.replace('ExecStart=/usr/bin/node', `ExecStart=${process.execPath}`);
  await writeFile(join(dir, 'mirrorcap.service'), here);
  const r = await run('systemd-analyze', ['verify', join(dir, 'mirrorcap.service')]);
  t.equal(r.code, 0, 'systemd-analyze verify passes');
  t.equal(`${r.stdout}${r.stderr}`.trim(), '', 'with nothing to say');
}

t.test('systemd-analyze verify: the unit as shipped', { skip: hasAnalyze ? false : 'systemd-analyze not installed' }, async (t) => {
  await verify(t, unitText);
});

t.test('systemd-analyze verify: with the interface-source alternative switched on', { skip: hasAnalyze ? false : 'systemd-analyze not installed' }, async (t) => {
  const alternative = [...unitText.matchAll(/^#((CapabilityBoundingSet|AmbientCapabilities|RestrictAddressFamilies)=.*)$/gm)];
  t.equal(alternative.length, 3, 'three commented lines');
  let text = unitText;
  for (const [line, setting, key] of alternative) {
    text = text.replace(new RegExp(`^${key}=.*$`, 'm'), setting!).replace(line, '');
  }
  t.match(text, /^AmbientCapabilities=CAP_NET_RAW$/m);
  t.match(text, /^CapabilityBoundingSet=CAP_NET_RAW$/m);
  await verify(t, text);
});

t.test('restart, limits, stop and reload', async (t) => {
  t.equal(one('Restart'), 'on-failure');
  t.ok(Number(one('LimitNOFILE')) >= 2 * Number(option('max-sessions')), `LimitNOFILE ${one('LimitNOFILE')} covers one file per session at --max-sessions ${option('max-sessions')}`);
  t.equal(one('KillSignal'), 'SIGTERM');
  t.ok(parseDuration(one('TimeoutStopSec') ?? '0') > 10, `TimeoutStopSec ${one('TimeoutStopSec')} > the 10 s SIGTERM takes at most`);
  t.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID', 'reload is SIGHUP');
});

t.test('hardening: read-only system, writable capture folder only, no privileges', async (t) => {
  t.equal(one('ProtectSystem'), 'strict');
  t.equal(one('NoNewPrivileges'), 'yes');
  t.equal(one('PrivateTmp'), 'yes');
  t.equal(one('CapabilityBoundingSet'), '', 'no capabilities');
  t.equal(one('AmbientCapabilities'), '', 'none ambient');
  t.match(unitText, /^#AmbientCapabilities=CAP_NET_RAW$/m, 'CAP_NET_RAW only as the commented interface-source alternative');
  const out = envs.get('MIRRORCAP_OUT');
  t.ok(out, 'the capture folder is set');
  t.equal(one('ReadWritePaths'), out, 'ReadWritePaths is exactly the capture folder');
  const workdir = one('WorkingDirectory')!;
  const created = (one('StateDirectory') ?? '').split(/\s+/).map((d) => `/var/lib/${d}`);
  t.ok(created.includes(out!) && created.includes(workdir), 'StateDirectory creates both, so ReadWritePaths exists at start');
});

t.test('it runs the appliance as the image lays it out, with real MIRRORCAP_ names', async (t) => {
  const runtime = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8')).at(-1)!;
  const entry = execForm(runtime.steps.find((s) => s.op === 'ENTRYPOINT')!.args);
  const cmd = execForm(runtime.steps.find((s) => s.op === 'CMD')!.args);
  t.equal(one('ExecStart'), ['/usr/bin/node', ...entry.slice(1), ...cmd].join(' '));
  const known = new Set(OPTIONS.map((o) => envName(o.name)));
  for (const name of envs.keys()) if (name.startsWith('MIRRORCAP_')) t.ok(known.has(name), `${name} is an option`);
});

t.test('the sysctl drop-in lets the kernel grant the default --recv-buffer', async (t) => {
  const text = await readFile(join(ROOT, 'deploy/sysctl.d/90-mirrorcap.conf'), 'utf8');
  const values = new Map(
    text
      .split('\n')
      .filter((l) => /^[\w.]+\s*=/.test(l))
      .map((l) => l.split('=').map((s) => s.trim()) as [string, string]),
  );
  const want = parseSize(option('recv-buffer'));
  for (const key of ['net.core.rmem_max', 'net.core.rmem_default']) {
    t.ok(Number(values.get(key)) >= want, `${key} = ${values.get(key)} >= ${want}`);
  }
  t.same([...values.keys()].sort(), ['net.core.rmem_default', 'net.core.rmem_max'], 'nothing else');
});
