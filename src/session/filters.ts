/**
 * The compiled capture filters of a configuration: `--filter` (every session without its
 * own) and each session's `filter:`. Compiled once, when the configuration is read (start,
 * SIGHUP), never when a session appears: a bad expression is a configuration error then
 * (exit 2 at start, the reload refused), not a surprise when its traffic arrives.
 *
 *   Config ──prepare()──▶ text → CompiledFilter ──get(text)──▶ Session (on create and reconfigure)
 */
import { ConfigError, type Config } from '../config.js';
import { codedError, ErrorCode } from '../errors.js';
import { compileFilter, FilterError, type CompiledFilter } from '../filter/index.js';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW } from '../pcap/linktype.js';

export class SessionFilters {
  private compiled = new Map<string, CompiledFilter>();
  /**
   * The same texts for sessions written as raw IP (GENEVE from a GWLB endpoint): null where
   * the expression names the link layer (ether host ...), which such a frame does not have.
   */
  private raw = new Map<string, CompiledFilter | null>();

  /**
   * Compiles every filter `config` names; throws ConfigError naming the option or session,
   * the word and its position. On error nothing changes: the filters compiled before stay.
   */
  prepare(config: Pick<Config, 'filter' | 'sessions'>): void {
    const next = new Map<string, CompiledFilter>();
    const add = (text: string | null, where: string): void => {
      if (text === null || next.has(text)) return;
      next.set(text, this.compiled.get(text) ?? compileOrThrow(text, where));
    };
    add(config.filter, '--filter');
    for (const s of config.sessions) add(s.filter, `the filter of session ${s.name}`);
    const raw = new Map<string, CompiledFilter | null>();
    for (const text of next.keys()) raw.set(text, this.raw.has(text) ? this.raw.get(text)! : compileRaw(text));
    this.compiled = next;
    this.raw = raw;
  }

  /**
   * The compiled filter of a text prepare() saw, for a session's link type; null for none,
   * and for a raw-IP session whose filter needs an Ethernet header (it keeps every packet,
   * as the files of such a session cannot be filtered by their link layer).
   */
  get(text: string | null, linkType: number = LINKTYPE_ETHERNET): CompiledFilter | null {
    if (text === null) return null;
    const f = linkType === LINKTYPE_RAW ? this.raw.get(text) : this.compiled.get(text);
    if (f === undefined) throw codedError(ErrorCode.INTERNAL, `filter not prepared: ${text}`);
    return f;
  }
}

function compileRaw(text: string): CompiledFilter | null {
  try {
    return compileFilter(text, LINKTYPE_RAW);
  } catch (err) {
    if (err instanceof FilterError) return null;
    throw err;
  }
}

function compileOrThrow(text: string, where: string): CompiledFilter {
  try {
    return compileFilter(text);
  } catch (err) {
    if (err instanceof FilterError) throw new ConfigError(`invalid ${where} ${JSON.stringify(text)}: ${err.message}`, { cause: err });
    throw err;
  }
}
