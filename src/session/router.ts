/**
 * VNI (optionally VNI + outer source address) → session. Configured sessions exist from
 * the start; unknown keys get an automatic session (vni-<n>, or vni-<n>-<source>) unless
 * strict mode is on, and never more than maxSessions at once. Lookups on the hot path
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
import { EndpointSlots, encapOf, hex64, VNI_MASK } from './keys.js';
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
  /** vni-keyed configured sessions, and vni+src templates (configured without a source). */
  private readonly byVni = new Map<number, SessionConfig>();
  private readonly withSource: boolean;
  /** GWLB endpoint ids seen: the pipeline asks for their keys. */
  readonly endpoints: EndpointSlots;
  private lastKey = -1;
  private readonly lastAddr = new Uint8Array(ADDR_BYTES);
  private lastSession: Session | null = null;

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
    if (key === this.lastKey && this.lastSession !== null && (!this.withSource || equalAddr(this.lastAddr, addr, addrOff))) {
      return this.lastSession;
    }
    const h = this.withSource ? keyHash(key, addr, addrOff) : key;
    const bucket = this.byKey.get(h);
    let found: Session | null = null;
    if (bucket !== undefined) {
      for (let i = 0; i < bucket.length; i++) {
        const e = bucket[i]!;
        if (e.key === key && (e.addr === null || equalAddr(e.addr, addr, addrOff))) {
          found = e.session;
          break;
        }
      }
    }
    if (found === null) found = this.admit(key, addr, addrOff, geneve);
    if (found !== null) {
      this.lastKey = key;
      if (this.withSource) for (let i = 0; i < ADDR_BYTES; i++) this.lastAddr[i] = addr[addrOff + i]!;
      this.lastSession = found;
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
    this.byVni.clear();
    for (const c of rules.configured) if (!this.withSource || c.source === null) this.byVni.set(c.vni, c);
    this.lastSession = null;
  }

  /** Configured sessions are routed before any packet (vni+src templates wait for sources). */
  private addConfigured(): void {
    for (const c of this.rules.configured) {
      if (this.withSource && c.source === null) continue;
      let addr: Uint8Array | null = null;
      if (c.source !== null) {
        addr = new Uint8Array(ADDR_BYTES);
        parseAddr(c.source, addr, 0);
      }
      if (!this.isRouted(c.vni, addr)) this.route(c, addr);
    }
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

  /** Which session a key belongs to under the current rules; null when strict refuses it. */
  private describe(vni: number, addr: Uint8Array, addrOff: number): SessionConfig | null {
    const encap = encapOf(vni);
    if (encap !== undefined) return this.describeTunnel(vni, encap, addr, addrOff);
    if (this.withSource) {
      const src = formatAddr(addr, addrOff);
      const exact = this.rules.configured.find((c) => c.vni === vni && c.source === src);
      if (exact) return exact;
    }
    const configured = this.byVni.get(vni);
    if (!this.withSource && configured) return configured;
    if (configured === undefined && this.rules.strict) return null;
    const base: SessionSettings = configured ?? this.rules.defaults;
    let name = configured?.name ?? automaticSessionName(vni);
    let source: string | null = null;
    if (this.withSource) {
      source = formatAddr(addr, addrOff);
      name = sourcedSessionName(name, source);
    }
    return Object.freeze({ ...sessionSettings(base), vni, name, source });
  }

  /**
   * A GENEVE-VNI or GWLB endpoint key: an automatic session (keys.ts names) with the
   * default settings, unless strict. The config file cannot name these yet.
   */
  private describeTunnel(key: number, encap: NonNullable<SessionConfig['encap']>, addr: Uint8Array, addrOff: number): SessionConfig | null {
    if (this.rules.strict) return null;
    const vni = key & VNI_MASK;
    let name = encap === 'gwlbe' ? `gwlbe-${this.endpoints.idOf(key)}` : encap === 'geneve' ? `geneve-${vni}` : `geneve-${vni}-ip`;
    let source: string | null = null;
    if (this.withSource) {
      source = formatAddr(addr, addrOff);
      name = sourcedSessionName(name, source);
    }
    // A GWLB sends VNI 0; the endpoint is the key.
    return Object.freeze({ ...sessionSettings(this.rules.defaults), vni: encap === 'gwlbe' ? 0 : vni, name, source, encap });
  }

  private isRouted(vni: number, addr: Uint8Array | null): boolean {
    const bucket = this.byKey.get(addr === null ? vni : keyHash(vni, addr, 0));
    return bucket?.some((e) => e.key === vni && (e.addr === null || (addr !== null && equalAddr(e.addr, addr, 0)))) ?? false;
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
    this.lastSession = null;
  }
}

const ZERO_ADDR = new Uint8Array(ADDR_BYTES);

/** What a session is for life: its name and its key (a vni-keyed session takes any source). */
function identity(c: SessionConfig): string {
  return `${c.name}/${c.encap ?? 'vxlan'}/${c.vni}/${c.source ?? '*'}`;
}

function equalAddr(a: Uint8Array, b: Uint8Array, off: number): boolean {
  for (let i = 0; i < ADDR_BYTES; i++) if (a[i] !== b[off + i]) return false;
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
