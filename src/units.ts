/** Parsing of the human-friendly values the configuration accepts. */

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** "100MiB" → 104857600; KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB of 1000. NaN when malformed. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return NaN;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return NaN;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(Math.round(n)) ? Math.round(n) : NaN;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** "1s", "500ms", "5m", "2h"; a bare number is seconds. Returns seconds, NaN when malformed. */
export function parseDuration(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!m) return NaN;
  return Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!;
}

/** 104857600 → "100MiB"; exact binary units where they fit, else bytes. */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return String(bytes);
}

export function formatDuration(seconds: number): string {
  if (seconds > 0 && seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  return `${seconds}s`;
}
