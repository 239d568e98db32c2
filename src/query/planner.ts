/**
 * From a filter's tree to the groups of one file that can hold a match: a superset, never
 * fewer (the filter decides each record read). Each primitive the index can answer becomes a
 * lookup; the rest mean "any group":
 *
 *   and(a, b) ─▶ groups(a) ∩ groups(b)     or(a, b) ─▶ groups(a) ∪ groups(b)
 *   not(x)    ─▶ any (a superset of x says nothing of its complement)
 *   host/net, port/portrange, ip/ip6/ether proto, vlan id    (with no `vlan` before them)
 *                                          ─▶ the key's groups (index-keys.ts says what is kept)
 *   anything else (packet data, len, ether host, broadcast, after a `vlan`) ─▶ any
 *
 * A plan is computed once per file; null stands for "any group". Lookups read the index's
 * key and postings pages as they need them, so planning is asynchronous.
 */
import type { FilterNode, HostNode, PortNode, ProtoNode } from '../filter/index.js';
import type { IndexReader } from '../finish/index-format.js';
import { foldV6, key, KEY_ETHER, KEY_PORT, KEY_PROTO4, KEY_PROTO6, KEY_V4, KEY_V6, KEY_VLAN } from '../finish/index-keys.js';

type Groups = number[] | null;

/** A list of at most 1/FEW of a file's groups is narrow enough to read as it is. */
const FEW = 16;

/** The groups of `index` that can hold a frame matching `tree`, ascending; null = all. */
export async function planGroups(tree: FilterNode, index: IndexReader): Promise<Groups> {
  if (!index.hasKeys) return null;
  return groupsOf(tree, index);
}

async function groupsOf(n: FilterNode, index: IndexReader): Promise<Groups> {
  switch (n.kind) {
    case 'and': {
      // and(a, b) is within a: once one side is a few groups, reading them beats decoding the
      // other side's list (often every group: `tcp`, `port 443`); the filter decides the rest.
      const l = await groupsOf(n.left, index);
      if (l !== null && l.length * FEW <= index.groups) return l;
      const r = await groupsOf(n.right, index);
      return l === null ? r : r === null ? l : intersect(l, r);
    }
    case 'or': {
      const l = await groupsOf(n.left, index);
      if (l === null) return null;
      const r = await groupsOf(n.right, index);
      return r === null ? null : union(l, r);
    }
    case 'host':
      return n.vlan === 0 ? hostGroups(n, index) : null;
    case 'port':
      return n.vlan === 0 ? portGroups(n, index) : null;
    case 'proto':
      return n.vlan === 0 ? protoGroups(n, index) : null;
    case 'vlan':
      return n.vlan === 0 && n.id !== null ? index.lookup(key(KEY_VLAN, n.id)) : null;
    default:
      return null;
  }
}

function fullMask(mask: readonly number[]): boolean {
  return mask.every((b) => b === 0xff);
}

async function hostGroups(n: HostNode, index: IndexReader): Promise<Groups> {
  if (n.family === 6) return fullMask(n.mask) ? index.lookup(key(KEY_V6, foldV6(n.addr, 0))) : null;
  const addr = be32(n.addr);
  if (fullMask(n.mask)) return index.lookup(key(KEY_V4, addr));
  // A network: every address of it the file holds (the key table is sorted, V4 keys together).
  const mask = be32(n.mask);
  const lo = key(KEY_V4, (addr & mask) >>> 0);
  const hi = key(KEY_V4, ((addr & mask) | ~mask) >>> 0);
  let out: number[] = [];
  for (const k of await index.keysBetween(lo, hi)) out = union(out, await index.lookup(k));
  return out;
}

async function portGroups(n: PortNode, index: IndexReader): Promise<Groups> {
  const lo = key(KEY_PORT, n.from);
  const hi = key(KEY_PORT, n.to);
  if (n.from === n.to) return index.lookup(lo);
  let out: number[] = [];
  for (const k of await index.keysBetween(lo, hi)) out = union(out, await index.lookup(k));
  return out;
}

async function protoGroups(n: ProtoNode, index: IndexReader): Promise<Groups> {
  switch (n.layer) {
    case 'ether':
      return n.protocol > 1500 ? index.lookup(key(KEY_ETHER, n.protocol)) : null;
    case 'ip':
      return index.lookup(key(KEY_PROTO4, n.protocol));
    case 'ip6':
      return index.lookup(key(KEY_PROTO6, n.protocol));
    case null:
      return union(await index.lookup(key(KEY_PROTO4, n.protocol)), await index.lookup(key(KEY_PROTO6, n.protocol)));
  }
}

function be32(b: readonly number[]): number {
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

export function intersect(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i]! < b[j]!) i++;
    else if (a[i]! > b[j]!) j++;
    else {
      out.push(a[i]!);
      i++;
      j++;
    }
  }
  return out;
}

export function union(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && a[i]! < b[j]!)) out.push(a[i++]!);
    else if (i >= a.length || b[j]! < a[i]!) out.push(b[j++]!);
    else {
      out.push(a[i++]!);
      j++;
    }
  }
  return out;
}
