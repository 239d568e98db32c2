/**
 * Session names are folders, file names and metric labels: two keys (VNI, or VNI + outer
 * source) must never end up under one name. Configured names, names made from a template
 * and a source, and automatic names (vni-<n>, vni-<n>-<address>) are checked together, by
 * the config (a clash is refused with one line naming the key) and by routing every key of
 * many generated configs, reloads included.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { parseAddr } from '../../src/addr.js';
import { parseFlags, resolveConfig, type Config } from '../../src/config.js';
import { Router } from '../../src/session/router.js';
import type { Session } from '../../src/session/session.js';
import { Random } from '../lib/random.js';
import { fakeSession } from '../lib/sessions.js';

const dir = await mkdtemp(join(tmpdir(), 'mirrorcap-names-'));
let files = 0;

type Entry = { vni: number; name: string; source?: string };

/** The config mirrorcap would run with, or the ConfigError's message. */
async function resolve(sessions: Entry[], sessionKey: 'vni' | 'vni+src', strict = false): Promise<Config | string> {
  const path = join(dir, `c${files++}.json`);
  await writeFile(path, JSON.stringify({ 'session-key': sessionKey, strict, sessions }));
  try {
    return resolveConfig(parseFlags(['--config', path]).flags, {});
  } catch (err) {
    if ((err as Error).name !== 'ConfigError') throw err;
    return (err as Error).message;
  }
}

/** A router, the keys routed to each of its sessions, and the key each session was made for. */
function routerFor(config: Config): { r: Router; keys: Map<Session, Set<string>>; born: Map<Session, string> } {
  const keys = new Map<Session, Set<string>>();
  const born = new Map<Session, string>();
  const r = new Router(
    { sessionKey: config.sessionKey, strict: config.strict, maxSessions: 1000, configured: config.sessions, defaults: config },
    (c) => {
      const session = fakeSession(c);
      born.set(session, `${c.vni}/${c.source}`);
      return session;
    },
  );
  return { r, keys, born };
}

const SOURCES = ['10.0.0.1', '10.0.0.2', '2001:db8::1', 'db8::1', '2:db8::1', '::1'];
const addrs = new Uint8Array(16 * SOURCES.length);
SOURCES.forEach((s, i) => parseAddr(s, addrs, 16 * i));
const VNIS = [1, 2, 3, 12];

/** Routes every key; fails the test when two keys share a session, or two sessions a name. */
function routeAll(t: Test, label: string, config: Config, rig: ReturnType<typeof routerFor>): void {
  const byName = new Map<string, Session>();
  for (const vni of VNIS) {
    for (let i = 0; i < SOURCES.length; i++) {
      const s = rig.r.lookup(vni, addrs, 16 * i);
      if (s === null) continue;
      const key = config.sessionKey === 'vni' ? `${vni}` : `${vni}/${SOURCES[i]}`;
      let set = rig.keys.get(s);
      if (!set) rig.keys.set(s, (set = new Set()));
      set.add(key);
      const other = byName.get(s.name);
      if (other !== undefined && other !== s) t.fail(`${label}: two sessions named ${s.name}`);
      byName.set(s.name, s);
    }
  }
  for (const [s, set] of rig.keys) {
    if (set.size > 1) t.fail(`${label}: keys ${[...set].join(', ')} share session ${s.name}`);
  }
}

t.test('a configured name that is another VNI\'s automatic name is refused, naming the key', async (t) => {
  for (const key of ['vni', 'vni+src'] as const) {
    const r = await resolve([{ vni: 1, name: 'vni-2' }], key);
    t.type(r, 'string', `${key}: refused`);
    t.match(r, /^invalid sessions\[0\]\.name "vni-2" \(from config file .*\): expected .*VNI 2/, `${key}: one line naming the key`);
    t.notMatch(r as string, /\n/);
  }
  t.type(await resolve([{ vni: 2, name: 'vni-2' }], 'vni'), 'object', 'a VNI may be given its own automatic name');
  t.type(await resolve([{ vni: 1, name: 'vni-1-10.0.0.1', source: '10.0.0.1' }], 'vni+src'), 'object', 'and an ENI its own');
  t.match(await resolve([{ vni: 1, name: 'vni-1-10.0.0.2', source: '10.0.0.1' }], 'vni+src'), /sessions\[0\]\.name "vni-1-10\.0\.0\.2"/, 'not another ENI\'s');
  t.type(await resolve([{ vni: 1, name: 'web' }, { vni: 2, name: 'web-prod' }], 'vni+src'), 'object', 'templates that cannot meet');
  t.match(
    await resolve([{ vni: 1, name: 'web' }, { vni: 2, name: 'web-2' }], 'vni+src'),
    /sessions\[1\]\.name "web-2".*web.*source/,
    'web + 2:db8::1 would be web-2 + db8::1',
  );
  t.match(
    await resolve([{ vni: 1, name: 'web' }, { vni: 2, name: 'web-10.0.0.9', source: '10.0.0.1' }], 'vni+src'),
    /sessions\[1\]\.name "web-10\.0\.0\.9"/,
    'a pinned name that the template makes for another source',
  );
  t.match(await resolve([{ vni: 1, name: 'vni' }], 'vni+src'), /sessions\[0\]\.name "vni"/, 'vni + 5:2001:db8::1 would be vni-5 + 2001:db8::1');
  t.type(await resolve([{ vni: 1, name: 'vni' }, { vni: 2, name: 'web-2' }], 'vni'), 'object', 'keyed by VNI alone no name is made from a source');
});

t.test('generated configs: whatever is accepted routes every key to a session of its own, reloads included', async (t) => {
  const names = ['vni-1', 'vni-2', 'vni-12', 'vni', 'web', 'web-2', 'web-db8', 'web-prod', 'web-10.0.0.1', 'web-2001-db8--1', 'vni-1-10.0.0.1', 'vni-2-10.0.0.1', 'vni-2-db8--1', 'vni-1-2001'];
  const random = new Random(0x2545f491);
  const rand = (n: number): number => random.below(n);
  let accepted = 0;
  let refused = 0;
  for (let round = 0; round < 300; round++) {
    const key = rand(2) === 0 ? 'vni' : 'vni+src';
    const configs: Config[] = [];
    for (let c = 0; c < 3; c++) {
      const entries: Entry[] = [];
      for (let i = rand(4); i > 0; i--) {
        const e: Entry = { vni: VNIS[rand(VNIS.length)]!, name: names[rand(names.length)]! };
        if (key === 'vni+src' && rand(2) === 0) e.source = SOURCES[rand(SOURCES.length)]!;
        entries.push(e);
      }
      const r = await resolve(entries, key, rand(4) === 0);
      if (typeof r === 'string') refused++;
      else {
        accepted++;
        configs.push(r);
      }
    }
    if (configs.length === 0) continue;
    const rig = routerFor(configs[0]!);
    routeAll(t, `round ${round} start`, configs[0]!, rig);
    for (const next of configs.slice(1)) {
      rig.r.reconfigure({ strict: next.strict, configured: next.sessions, defaults: next });
      routeAll(t, `round ${round} reload`, next, rig);
    }
    for (const [s, born] of rig.born) {
      if (`${s.vni}/${s.config.source}` !== born) t.fail(`round ${round}: session ${s.name} moved from ${born} to ${s.vni}/${s.config.source}: its counters would carry another key's packets`);
    }
  }
  t.ok(accepted > 100 && refused > 100, `both kinds generated (${accepted} accepted, ${refused} refused)`);
});

t.test('a reload that gives a name to another VNI starts a new session: counters never change VNI', async (t) => {
  const a = (await resolve([{ vni: 1, name: 'x' }], 'vni')) as Config;
  const b = (await resolve([{ vni: 2, name: 'x' }], 'vni')) as Config;
  const rig = routerFor(a);
  const before = rig.r.lookup(1, addrs, 0)!;
  const { retired } = rig.r.reconfigure({ strict: false, configured: b.sessions, defaults: b });
  t.same(retired, [before]);
  const after = rig.r.lookup(2, addrs, 0)!;
  t.equal(after.name, 'x');
  t.not(after, before, 'a new session for VNI 2');
  t.equal(before.vni, 1, 'the old one keeps its VNI (and its metric labels)');
  t.equal(rig.r.lookup(1, addrs, 0)!.name, 'vni-1');
  rig.r.reconfigure({ strict: false, configured: a.sessions, defaults: a });
  t.equal(rig.r.lookup(1, addrs, 0), before, 'moving it back revives the first one');
});

t.test('a source written another way (2001:DB8:0::1) is the same ENI, before and after a reload', async (t) => {
  const c = (await resolve([{ vni: 1, name: 'pinned', source: '2001:DB8:0::1' }], 'vni+src')) as Config;
  t.equal(c.sessions[0]!.source, '2001:db8::1', 'kept in its canonical form (RFC 5952)');
  const rig = routerFor(c);
  const pinned = rig.r.lookup(1, addrs, 16 * SOURCES.indexOf('2001:db8::1'));
  t.equal(pinned?.name, 'pinned');
  const { retired } = rig.r.reconfigure({ strict: false, configured: c.sessions, defaults: c });
  t.same(retired, [], 'the same config reloaded retires nothing');
  t.equal(rig.r.lookup(1, addrs, 16 * SOURCES.indexOf('2001:db8::1')), pinned);
});
