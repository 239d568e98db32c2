/**
 * VNI (optionally VNI + outer source address) → session; likewise a GENEVE VNI or a GWLB
 * endpoint (keys.ts). Configured sessions (of any key) exist from the start; unknown keys get
 * an automatic session (vni-<n>, geneve-<n>, gwlbe-<id>, ..., with -<source> under vni+src)
 * unless strict mode is on, and never more than maxSessions at once. Lookups on the hot path
 * allocate nothing: a one-entry cache, then a Map keyed by a number.
 *
 * reconfigure() applies a reloaded config between two batches: every routed key is asked
 * again which session it belongs to; sessions that keep their name get the new settings,
 * the others are retired (their file closed) and the key is admitted afresh.
 *
 * A session is one name for one key (VNI, and source with vni+src), for its whole life: its
 * counters carry that key's packets only. The config refuses names that could clash (see
 * config.ts nameClash); a reload that gives a name to another key makes a new session of that
 * name (same folder, fresh counters), and giving it back revives the old one.
 */
import { formatAddr, parseAddr } from '../addr.js';
import { automaticSessionName, sessionSettings, sourcedSessionName, type SessionConfig, type SessionKey, type SessionSettings } from '../config.js';
import { ADDR_BYTES } from '../source/batch.js';
import { DROP_SESSION_LIMIT, DROP_UNKNOWN_VNI } from '../drops.js';
import type { Geneve } from '../decode/geneve.js';
import { EndpointSlots, encapOf, hex64, KEY_GENEVE, VNI_MASK } from './keys.js';
import type { GwlbIds, Session } from './session.js';

/** `gwlb`: the AWS GWLB ids of the GENEVE packet that made the session, if one did. */
export type SessionFactory = (config: SessionConfig, gwlb: GwlbIds | null) => Session;

/** What can change on reload. */
export interface RoutingRules {
  readonly strict: boolean;
  readonly configured: readonly SessionConfig[];
  readonly defaults: SessionSettings;
}

export interface RouterOptions extends RoutingRules {
  readonly sessionKey: SessionKey;
  readonly maxSessions: number;
}

interface Entry {
  readonly session: Session;
  /** The VNI, or a GENEVE / GWLB endpoint key (keys.ts). */
  readonly key: number;
  /** Outer source (16 bytes) for vni+src keys; null matches any source (vni keys). */
  readonly addr: Uint8Array | null;
}

export class Router {
  /** Why the last lookup returned null: a DROP_* code. */
  missReason = DROP_UNKNOWN_VNI;
  /** Every session ever made, routed or retired, in order of creation; the routed ones have unique names. */
  readonly sessions: Session[] = [];
  /** Sessions by name and key (see identity()). */
  private readonly byIdentity = new Map<string, Session>();
  private readonly byKey = new Map<number, Entry[]>();
  private active = 0;
  private rules!: RoutingRules;
  /** Configured sessions by router key (keyOf), and vni+src templates (configured without a source). */
  private readonly configuredByKey = new Map<number, SessionConfig>();
  /** Keyed by VNI and source (--session-key vni+src): lookups read the address. */
  readonly withSource: boolean;
  /** GWLB endpoint ids seen: the pipeline asks for their keys. */
  readonly endpoints: EndpointSlots;
  /**
   * Recent routes, direct-mapped by key (with the source when keyed by it) in front of byKey:
   * a batch's sessions take turns, and a Map lookup per packet was ~3 % of the afpacket
   * appliance's CPU. Emptied whenever a route goes or the rules change.
   */
  private readonly recentKey = new Float64Array(RECENT).fill(-1);
  private readonly recentAddr = new Uint8Array(RECENT * ADDR_BYTES);
  private readonly recentSession: (Session | null)[] = new Array<Session | null>(RECENT).fill(null);

  constructor(
    private readonly opts: RouterOptions,
    private readonly create: SessionFactory,
  ) {
    this.withSource = opts.sessionKey === 'vni+src';
    this.endpoints = new EndpointSlots(opts.maxSessions);
    this.setRules(opts);
    this.addConfigured();
  }

  /** Sessions currently receiving. */
  get activeSessions(): number {
    return this.active;
  }

  /**
   * The session of a key (VNI, or keys.ts's GENEVE / GWLB endpoint keys) and source. `geneve` is
   * the header the packet came in, when it did: a new session keeps its GWLB ids.
   */
  lookup(key: number, addr: Uint8Array, addrOff: number, geneve: Geneve | null = null): Session | null {
    const h = this.withSource ? keyHash(key, addr, addrOff) : key;
    const c = h & (RECENT - 1);
    const recent = this.recentSession[c]!;
    if (recent !== null && this.recentKey[c] === key && (!this.withSource || equalAddr(this.recentAddr, c * ADDR_BYTES, addr, addrOff))) return recent;
    const bucket = this.byKey.get(h);
    let found: Session | null = null;
    if (bucket !== undefined) {
      for (let i = 0; i < bucket.length; i++) {
        const e = bucket[i]!;
        if (e.key === key && (e.addr === null || equalAddr(e.addr, 0, addr, addrOff))) {
          found = e.session;
          break;
        }
      }
    }
    if (found === null) found = this.admit(key, addr, addrOff, geneve);
    if (found !== null) {
      this.recentKey[c] = key;
      if (this.withSource) for (let i = 0; i < ADDR_BYTES; i++) this.recentAddr[c * ADDR_BYTES + i] = addr[addrOff + i]!;
      this.recentSession[c] = found;
    }
    return found;
  }

  /**
   * Applies new rules. Returns the sessions retired (their keys now route elsewhere or are
   * refused); the caller closes their files. Sessions that keep their name are updated.
   */
  reconfigure(rules: RoutingRules): { updated: Session[]; retired: Session[] } {
    this.setRules(rules);
    const updated: Session[] = [];
    const retired: Session[] = [];
    for (const [hash, bucket] of [...this.byKey]) {
      for (const e of [...bucket]) {
        const want = this.describe(e.key, e.addr ?? ZERO_ADDR, 0);
        if (want !== null && want.name === e.session.name) {
          e.session.reconfigure(want);
          updated.push(e.session);
        } else {
          this.unroute(hash, e);
          retired.push(e.session);
        }
      }
    }
    this.addConfigured();
    return { updated, retired };
  }

  private setRules(rules: RoutingRules): void {
    this.rules = rules;
    this.configuredByKey.clear();
    for (const c of rules.configured) {
      const key = this.keyOf(c);
      if (key >= 0 && (!this.withSource || c.source === null)) this.configuredByKey.set(key, c);
    }
    this.recentSession.fill(null);
  }

  /** Configured sessions are routed before any packet (vni+src templates wait for sources). */
  private addConfigured(): void {
    for (const c of this.rules.configured) {
      if (this.withSource && c.source === null) continue;
      const key = this.keyOf(c);
      if (key < 0) continue; // more GWLB endpoints configured than --max-sessions: never routable
      let addr: Uint8Array | null = null;
      if (c.source !== null) {
        addr = new Uint8Array(ADDR_BYTES);
        parseAddr(c.source, addr, 0);
      }
      if (!this.isRouted(key, addr)) this.route(c, addr, key, c.endpoint === undefined ? null : { endpointId: c.endpoint, attachmentId: null });
    }
  }

  /**
   * The router key of a configured session (keys.ts): its VNI, KEY_GENEVE + its GENEVE VNI, or its
   * GWLB endpoint's slot (given now, so the endpoint's first packet finds it); -1 when no slot is left.
   */
  private keyOf(c: SessionConfig): number {
    if (c.encap === 'geneve') return KEY_GENEVE + c.vni;
    if (c.encap === 'gwlbe' && c.endpoint !== undefined) {
      return this.endpoints.key(Number.parseInt(c.endpoint.slice(0, 8), 16), Number.parseInt(c.endpoint.slice(8), 16));
    }
    return c.vni;
  }

  /** A key seen for the first time: route it to its session if the rules allow. Not per packet. */
  private admit(key: number, addr: Uint8Array, addrOff: number, geneve: Geneve | null): Session | null {
    const config = this.describe(key, addr, addrOff);
    if (config === null) {
      this.missReason = DROP_UNKNOWN_VNI;
      return null;
    }
    if (this.active >= this.opts.maxSessions) {
      this.missReason = DROP_SESSION_LIMIT;
      return null;
    }
    const gwlb =
      geneve !== null && geneve.hasEndpoint
        ? { endpointId: hex64(geneve.endpointHi, geneve.endpointLo), attachmentId: geneve.hasAttachment ? hex64(geneve.attachmentHi, geneve.attachmentLo) : null }
        : null;
    return this.route(config, this.withSource ? addr.slice(addrOff, addrOff + ADDR_BYTES) : null, key, gwlb);
  }

  /**
   * Which session a key belongs to under the current rules; null when strict refuses it. One
   * path for every kind of key: configured (by key, and by source with vni+src), else automatic
   * (vni-<n>, geneve-<n>, gwlbe-<id>, geneve-<n>-ip) unless strict.
   */
  private describe(key: number, addr: Uint8Array, addrOff: number): SessionConfig | null {
    if (this.withSource) {
      const src = formatAddr(addr, addrOff);
      const exact = this.rules.configured.find((c) => c.source === src && this.keyOf(c) === key);
      if (exact) return exact;
    }
    const configured = this.configuredByKey.get(key);
    if (!this.withSource && configured) return configured;
    if (configured === undefined && this.rules.strict) return null;
    const base: SessionSettings = configured ?? this.rules.defaults;
    let name = configured?.name ?? this.automaticName(key);
    let source: string | null = null;
    if (this.withSource) {
      source = formatAddr(addr, addrOff);
      name = sourcedSessionName(name, source);
    }
    const encap = encapOf(key);
    if (encap === undefined) return Object.freeze({ ...sessionSettings(base), vni: key, name, source });
    // A GWLB sends VNI 0; the endpoint is the key.
    const tunnel = encap === 'gwlbe' ? { vni: 0, encap, endpoint: this.endpoints.idOf(key) } : { vni: key & VNI_MASK, encap };
    return Object.freeze({ ...sessionSettings(base), ...tunnel, name, source });
  }

  /** The name of a key nobody configured (keys.ts). */
  private automaticName(key: number): string {
    const vni = key & VNI_MASK;
    switch (encapOf(key)) {
      case undefined:
        return automaticSessionName(key);
      case 'geneve':
        return `geneve-${vni}`;
      case 'gwlbe':
        return `gwlbe-${this.endpoints.idOf(key)}`;
      case 'geneve-ip':
        return `geneve-${vni}-ip`;
    }
  }

  private isRouted(vni: number, addr: Uint8Array | null): boolean {
    const bucket = this.byKey.get(addr === null ? vni : keyHash(vni, addr, 0));
    return bucket?.some((e) => e.key === vni && (e.addr === null || (addr !== null && equalAddr(e.addr, 0, addr, 0)))) ?? false;
  }

  /** Routes a key to the session of that name and key, reviving a retired one or making a new one. */
  private route(config: SessionConfig, addr: Uint8Array | null, key = config.vni, gwlb: GwlbIds | null = null): Session {
    const id = identity(config);
    let session = this.byIdentity.get(id);
    if (session === undefined) {
      session = this.create(config, gwlb);
      this.byIdentity.set(id, session);
      this.sessions.push(session);
    } else {
      session.reconfigure(config);
    }
    const hash = addr === null ? key : keyHash(key, addr, 0);
    const entry: Entry = { session, key, addr };
    const bucket = this.byKey.get(hash);
    if (bucket) bucket.push(entry);
    else this.byKey.set(hash, [entry]);
    this.active++;
    return session;
  }

  private unroute(hash: number, entry: Entry): void {
    const bucket = this.byKey.get(hash)!;
    bucket.splice(bucket.indexOf(entry), 1);
    if (bucket.length === 0) this.byKey.delete(hash);
    this.active--;
    this.recentSession.fill(null);
  }
}

const ZERO_ADDR = new Uint8Array(ADDR_BYTES);
/** Slots of the recent-routes cache (a power of two). */
const RECENT = 64;

/** What a session is for life: its name and its key (a vni-keyed session takes any source). */
function identity(c: SessionConfig): string {
  return `${c.name}/${c.encap ?? 'vxlan'}/${c.endpoint ?? c.vni}/${c.source ?? '*'}`;
}

function equalAddr(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  for (let i = 0; i < ADDR_BYTES; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

/** FNV-1a over the VNI and the address; collisions are resolved by comparing bytes. */
function keyHash(vni: number, addr: Uint8Array, off: number): number {
  let h = 0x811c9dc5 ^ vni;
  h = Math.imul(h, 0x01000193);
  for (let i = 0; i < ADDR_BYTES; i++) {
    h ^= addr[off + i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
