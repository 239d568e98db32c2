/**
 * The times a query takes (--since, --until, ?since=, ?until=): RFC 3339 ("2026-11-30T14:02:00Z",
 * with an offset or a fraction down to nanoseconds), Unix seconds ("1795000000", "1795000000.5"),
 * or a duration back from now ("15m", "2h", "90s", "1d").
 */
import { parseDuration } from '../units.js';
import type { Time } from './file-source.js';

const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** [sec, nsec] of `text`, or null when it is none of the three forms. */
export function parseTime(text: string, nowMs = Date.now()): Time | null {
  const t = text.trim();
  const unix = /^(\d+)(?:\.(\d{1,9}))?$/.exec(t);
  if (unix !== null) return [Number(unix[1]), fraction(unix[2])];
  const rfc = RFC3339.exec(t);
  if (rfc !== null) {
    const ms = Date.parse(`${rfc[1]}T${rfc[2]}${rfc[4]!.toUpperCase()}`);
    return Number.isNaN(ms) ? null : [ms / 1000, fraction(rfc[3])];
  }
  if (/^\d+(?:\.\d+)?(?:ms|s|m|h|d)$/.test(t)) {
    const back = parseDuration(t);
    const ns = Math.round((nowMs - back * 1000) * 1e6);
    return [Math.floor(ns / 1e9), ns % 1e9];
  }
  return null;
}

function fraction(digits: string | undefined): number {
  return digits === undefined ? 0 : Number(digits.padEnd(9, '0'));
}
