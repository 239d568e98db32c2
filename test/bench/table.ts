/** Plain-text tables for the bench sections: the first row is the header; numbers right-aligned. */
export function printTable(rows: readonly (readonly string[])[], leftColumns: readonly number[] = [0]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  for (const r of rows) {
    const cells = r.map((v, c) => (leftColumns.includes(c) ? v.padEnd(widths[c]!) : v.padStart(widths[c]!)));
    console.log(cells.join('  ').trimEnd());
  }
}

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(v: readonly number[]): number {
  if (v.length === 0) return NaN;
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
