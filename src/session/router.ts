/**
 * VNI (optionally VNI + outer source address) → session. Configured sessions exist from
 * the start; unknown keys get an automatic session (vni-<n>, or vni-<n>-<source>) unless
 * strict mode is on, and never more than maxSessions. Lookups on the hot path allocate
 * nothing: a one-entry cache, then a Map keyed by a number.
 */
import { addrForName, formatAddr, parseAddr } from '../addr.js';
import type { RotationConfig, SessionConfig, SessionKey } from '../config.js';
import { ADDR_BYTES } from '../source/batch.js';
import { DROP_SESSION_LIMIT, DROP_UNKNOWN_VNI } from '../drops.js';
import type { Session } from './session.js';

export type SessionFactory = (config: SessionConfig) => Session;

export interface RouterOptions {
  readonly sessionKey: SessionKey;
  readonly strict: boolean;
  readonly maxSessions: number;
  readonly configured: readonly SessionConfig[];
  readonly defaults: RotationConfig;
}

interface Entry {
  readonly session: Session;
  readonly vni: number;
  /** Outer source (16 bytes) for vni+src keys. */
  readonly addr: Uint8Array | null;
}

export class Router {
  /** Why the last lookup returned null: a DROP_* code. */
  missReason = DROP_UNKNOWN_VNI;
  readonly sessions: Session[] = [];
  private readonly byKey = new Map<number, Entry[]>();
  /** vni+src sessions configured without a source: a template for every source of that VNI. */
  private readonly templates = new Map<number, SessionConfig>();
  private readonly withSource: boolean;
  private lastVni = -1;
  private readonly lastAddr = new Uint8Array(ADDR_BYTES);
  private lastSession: Session | null = null;

  constructor(
    private readonly opts: RouterOptions,
    private readonly create: SessionFactory,
  ) {
    this.withSource = opts.sessionKey === 'vni+src';
    for (const c of opts.configured) {
      if (this.withSource && c.source === null) this.templates.set(c.vni, c);
      else {
        let addr: Uint8Array | null = null;
        if (c.source !== null) {
          addr = new Uint8Array(ADDR_BYTES);
          parseAddr(c.source, addr, 0);
        }
        this.add(c, addr);
      }
    }
  }

  lookup(vni: number, addr: Uint8Array, addrOff: number): Session | null {
    if (vni === this.lastVni && this.lastSession !== null && (!this.withSource || equalAddr(this.lastAddr, addr, addrOff))) {
      return this.lastSession;
    }
    const h = this.withSource ? keyHash(vni, addr, addrOff) : vni;
    const bucket = this.byKey.get(h);
    let found: Session | null = null;
    if (bucket !== undefined) {
      for (let i = 0; i < bucket.length; i++) {
        const e = bucket[i]!;
        if (e.vni === vni && (e.addr === null || equalAddr(e.addr, addr, addrOff))) {
          found = e.session;
          break;
        }
      }
    }
    if (found === null) found = this.admit(vni, addr, addrOff);
    if (found !== null) {
      this.lastVni = vni;
      if (this.withSource) for (let i = 0; i < ADDR_BYTES; i++) this.lastAddr[i] = addr[addrOff + i]!;
      this.lastSession = found;
    }
    return found;
  }

  /** A key seen for the first time: make its session if the rules allow. Not per packet. */
  private admit(vni: number, addr: Uint8Array, addrOff: number): Session | null {
    const template = this.withSource ? this.templates.get(vni) : undefined;
    if (this.opts.strict && template === undefined) {
      this.missReason = DROP_UNKNOWN_VNI;
      return null;
    }
    if (this.sessions.length >= this.opts.maxSessions) {
      this.missReason = DROP_SESSION_LIMIT;
      return null;
    }
    let key: Uint8Array | null = null;
    let name = `vni-${vni}`;
    let base: RotationConfig = this.opts.defaults;
    if (this.withSource) {
      key = addr.slice(addrOff, addrOff + ADDR_BYTES);
      const src = addrForName(formatAddr(addr, addrOff));
      name = template ? `${template.name}-${src}` : `${name}-${src}`;
      if (template) base = template;
    }
    const { rotateSize, rotateSeconds, rotatePackets, ring, snaplen } = base;
    const config: SessionConfig = Object.freeze({
      vni,
      name,
      source: key === null ? null : formatAddr(key, 0),
      rotateSize,
      rotateSeconds,
      rotatePackets,
      ring,
      snaplen,
    });
    return this.add(config, key);
  }

  private add(config: SessionConfig, addr: Uint8Array | null): Session {
    const session = this.create(config);
    const h = addr === null ? config.vni : keyHash(config.vni, addr, 0);
    const bucket = this.byKey.get(h);
    const entry: Entry = { session, vni: config.vni, addr };
    if (bucket) bucket.push(entry);
    else this.byKey.set(h, [entry]);
    this.sessions.push(session);
    return session;
  }
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
