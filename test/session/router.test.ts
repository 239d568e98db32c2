import t from 'tap';
import { parseAddr } from '../../src/addr.js';
import type { SessionSettings, SessionConfig } from '../../src/config.js';
import { EMPTY_FLOW_INFO } from '../../src/flowformat.js';
import { DROP_SESSION_LIMIT, DROP_UNKNOWN_VNI } from '../../src/drops.js';
import { Router, type RouterOptions } from '../../src/session/router.js';
import { fakeSession } from '../lib/sessions.js';

const defaults: SessionSettings = { rotateSize: 0, rotateSeconds: 0, rotatePackets: 0, rotateAlign: false, ring: 0, dedup: 0, snaplen: 65535, filter: null, format: 'pcap', flows: false, flowFields: EMPTY_FLOW_INFO };
const configured = (vni: number, name: string, extra: Partial<SessionConfig> = {}): SessionConfig => ({ ...defaults, vni, name, source: null, ...extra });

function router(opts: Partial<RouterOptions>): { r: Router; made: SessionConfig[] } {
  const made: SessionConfig[] = [];
  const r = new Router(
    { sessionKey: 'vni', strict: false, maxSessions: 100, configured: [], defaults, ...opts },
    (config) => {
      made.push(config);
      return fakeSession(config);
    },
  );
  return { r, made };
}

const addrs = new Uint8Array(16 * 4);
parseAddr('10.0.0.1', addrs, 0);
parseAddr('10.0.0.2', addrs, 16);
parseAddr('2001:db8::7', addrs, 32);

t.test('by VNI: configured names, automatic vni-<n>, one session per VNI whatever the source', async (t) => {
  const { r, made } = router({ configured: [configured(123, 'web-prod')] });
  t.equal(made.length, 1, 'configured sessions exist before any packet');
  t.equal(r.lookup(123, addrs, 0)?.name, 'web-prod');
  t.equal(r.lookup(5, addrs, 0)?.name, 'vni-5');
  t.equal(r.lookup(5, addrs, 16), r.lookup(5, addrs, 0), 'the source does not matter');
  t.equal(r.lookup(123, addrs, 16)?.name, 'web-prod');
  t.equal(r.sessions.length, 2);
});

t.test('strict: unknown VNIs are refused with unknown_vni', async (t) => {
  const { r } = router({ strict: true, configured: [configured(1, 'a')] });
  t.equal(r.lookup(2, addrs, 0), null);
  t.equal(r.missReason, DROP_UNKNOWN_VNI);
  t.equal(r.lookup(1, addrs, 0)?.name, 'a');
});

t.test('max-sessions: the next new key is refused with session_limit', async (t) => {
  const { r } = router({ maxSessions: 2 });
  t.ok(r.lookup(1, addrs, 0));
  t.ok(r.lookup(2, addrs, 0));
  t.equal(r.lookup(3, addrs, 0), null);
  t.equal(r.missReason, DROP_SESSION_LIMIT);
  t.ok(r.lookup(1, addrs, 0), 'existing sessions still route');
});

t.test('by VNI + source: exact sources, templates, automatic names with the address', async (t) => {
  const { r, made } = router({
    sessionKey: 'vni+src',
    configured: [configured(1, 'pinned', { source: '10.0.0.2' }), configured(1, 'web', { snaplen: 128 })],
  });
  t.equal(made.length, 1, 'only the pinned session exists up front');
  t.equal(r.lookup(1, addrs, 16)?.name, 'pinned');
  const fromTemplate = r.lookup(1, addrs, 0);
  t.equal(fromTemplate?.name, 'web-10.0.0.1', 'template name + source');
  t.equal(fromTemplate?.config.snaplen, 128, 'template settings apply');
  t.equal(fromTemplate?.config.source, '10.0.0.1');
  t.equal(r.lookup(9, addrs, 32)?.name, 'vni-9-2001-db8--7', 'IPv6 colons become dashes');
  t.equal(r.lookup(9, addrs, 0)?.name, 'vni-9-10.0.0.1');
  t.not(r.lookup(9, addrs, 0), r.lookup(9, addrs, 32), 'one session per source');
  // alternate between keys so the one-entry cache is missed every time
  for (let i = 0; i < 10; i++) {
    t.equal(r.lookup(1, addrs, (i % 2) * 16)?.name, i % 2 ? 'pinned' : 'web-10.0.0.1');
  }
  t.equal(r.sessions.length, 4);
});

t.test('vni+src strict: a template admits any source of its VNI, nothing else', async (t) => {
  const { r } = router({ sessionKey: 'vni+src', strict: true, configured: [configured(1, 'web')] });
  t.equal(r.lookup(1, addrs, 0)?.name, 'web-10.0.0.1');
  t.equal(r.lookup(2, addrs, 0), null);
  t.equal(r.missReason, DROP_UNKNOWN_VNI);
});

t.test('reconfigure: renamed, added, removed and strict sessions, between two lookups', async (t) => {
  const { r, made } = router({ configured: [configured(1, 'one'), configured(2, 'two')] });
  t.equal(r.lookup(3, addrs, 0)?.name, 'vni-3');
  t.equal(r.lookup(4, addrs, 0)?.name, 'vni-4');
  const oneBefore = r.lookup(1, addrs, 0);
  const { updated, retired } = r.reconfigure({
    strict: false,
    defaults: { ...defaults, ring: 9 },
    configured: [configured(1, 'one', { ring: 5 }), configured(2, 'deux'), configured(3, 'three')],
  });
  t.same(retired.map((s) => s.name).sort(), ['two', 'vni-3'], 'renamed and newly configured keys retire their old session');
  t.same(updated.map((s) => s.name).sort(), ['one', 'vni-4']);
  t.equal(r.lookup(1, addrs, 0), oneBefore, 'a session that keeps its name is the same object');
  t.equal(r.lookup(1, addrs, 0)?.config.ring, 5, 'with the new settings');
  t.equal(r.lookup(4, addrs, 0)?.config.ring, 9, 'automatic sessions take the new defaults');
  t.equal(r.lookup(2, addrs, 0)?.name, 'deux');
  t.equal(r.lookup(3, addrs, 0)?.name, 'three');
  t.equal(r.activeSessions, 4);

  const back = r.reconfigure({ strict: false, defaults, configured: [configured(1, 'one')] });
  t.same(back.retired.map((s) => s.name).sort(), ['deux', 'three']);
  t.equal(r.lookup(3, addrs, 0)?.name, 'vni-3', 'an unconfigured VNI goes back to its automatic session');
  t.equal(made.filter((c) => c.name === 'vni-3').length, 1, 'which is revived, not made twice');

  const strict = r.reconfigure({ strict: true, defaults, configured: [configured(1, 'one')] });
  t.same(strict.retired.map((s) => s.name).sort(), ['vni-3', 'vni-4'], 'strict retires every automatic session');
  t.equal(r.lookup(4, addrs, 0), null, 'strict now refuses unknown VNIs');
  t.equal(r.missReason, DROP_UNKNOWN_VNI);
  t.equal(r.activeSessions, 1);
  t.equal(new Set(r.sessions.map((s) => s.name)).size, r.sessions.length, 'names stay unique');
});
