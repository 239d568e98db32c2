/**
 * The import graph of src/: which module imports which, the room (stage of the pipeline)
 * each module belongs to, and the arrows that run back up. Used by test/architecture.test.ts
 * and printed by `node dist/test/lib/imports.js` (a text drawing of the rooms and arrows).
 *
 * Rooms, lowest first. A module may import modules of its own room or of a lower one; an
 * import of a higher room is an arrow back up the pipeline.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOMS: ReadonlyArray<{ readonly room: string; readonly paths: readonly string[] }> = [
  { room: 'decode', paths: ['decode/'] },
  { room: 'base', paths: ['config.ts', 'units.ts', 'addr.ts', 'log.ts', 'drops.ts', 'errors.ts', 'flowformat.ts'] },
  { room: 'filter', paths: ['filter/'] },
  { room: 'pcap', paths: ['pcap/'] },
  { room: 'native', paths: ['native/'] },
  { room: 'source', paths: ['source/'] },
  { room: 'session', paths: ['session/'] },
  { room: 'capture', paths: ['capture/'] },
  { room: 'finish', paths: ['finish/'] },
  { room: 'recorder', paths: ['recorder.ts'] },
  { room: 'query', paths: ['query/'] },
  { room: 'control', paths: ['control/'] },
  { room: 'commands', paths: ['commands/', 'replay/', 'app.ts', 'main.ts'] },
];

export const SRC_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../src');

export interface ImportGraph {
  /** Module paths relative to src/, e.g. "capture/writer.ts". */
  readonly modules: readonly string[];
  /** module → the modules of src/ it imports (type-only imports included: they are arrows too). */
  readonly edges: ReadonlyMap<string, readonly string[]>;
}

function listTs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listTs(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;

export function importGraph(srcDir = SRC_DIR): ImportGraph {
  const files = listTs(srcDir).sort();
  const modules = files.map((f) => relative(srcDir, f));
  const edges = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const targets = new Set<string>();
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2]!;
      if (!spec.startsWith('.')) continue;
      targets.add(relative(srcDir, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))));
    }
    edges.set(relative(srcDir, file), [...targets].sort());
  }
  return { modules, edges };
}

/** The room of a module, and its rank (index in ROOMS); throws for a module no room claims. */
export function roomOf(module: string): { room: string; rank: number } {
  const rank = ROOMS.findIndex((r) => r.paths.some((p) => (p.endsWith('/') ? module.startsWith(p) : module === p)));
  if (rank < 0) throw new Error(`src/${module} belongs to no room (test/lib/imports.ts ROOMS)`);
  return { room: ROOMS[rank]!.room, rank };
}

/** Imports from a lower room to a higher one. */
export function arrowsBack(graph: ImportGraph): string[] {
  const out: string[] = [];
  for (const [from, tos] of graph.edges) {
    for (const to of tos) {
      const a = roomOf(from);
      const b = roomOf(to);
      if (b.rank > a.rank) out.push(`${from} (${a.room}) → ${to} (${b.room})`);
    }
  }
  return out;
}

/** Every import cycle, each as the list of modules around it (found once, from its smallest member). */
export function cycles(graph: ImportGraph): string[][] {
  const found: string[][] = [];
  const seen = new Set<string>();
  const visit = (start: string, at: string, path: string[]): void => {
    for (const next of graph.edges.get(at) ?? []) {
      if (next === start) {
        const key = [...path].sort().join(' ');
        if (!seen.has(key)) {
          seen.add(key);
          found.push([...path, start]);
        }
      } else if (next > start && !path.includes(next)) visit(start, next, [...path, next]);
    }
  };
  for (const m of graph.modules) visit(m, m, [m]);
  return found;
}

/** Rooms and the arrows between them, with counts: the drawing docs/architecture.md shows. */
export function roomDrawing(graph: ImportGraph): string {
  const counts = new Map<string, number>();
  for (const [from, tos] of graph.edges) {
    for (const to of tos) {
      const a = roomOf(from).room;
      const b = roomOf(to).room;
      if (a !== b) counts.set(`${a} → ${b}`, (counts.get(`${a} → ${b}`) ?? 0) + 1);
    }
  }
  const lines: string[] = [];
  for (const { room } of [...ROOMS].reverse()) {
    const mods = graph.modules.filter((m) => roomOf(m).room === room);
    if (mods.length === 0) continue;
    const out = [...counts].filter(([k]) => k.startsWith(`${room} → `)).map(([k, n]) => `${k.slice(room.length + 3)} (${n})`);
    lines.push(`${room.padEnd(9)} ${String(mods.length).padStart(3)} modules  imports: ${out.join(', ') || '—'}`);
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const g = importGraph();
  process.stdout.write(`${roomDrawing(g)}\n`);
  const back = arrowsBack(g);
  const loops = cycles(g);
  process.stdout.write(`\narrows back up: ${back.length}\n${back.map((a) => `  ${a}\n`).join('')}`);
  process.stdout.write(`cycles: ${loops.length}\n${loops.map((c) => `  ${c.join(' → ')}\n`).join('')}`);
}
