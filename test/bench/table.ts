/** Plain-text tables for the bench sections: the first row is the header; numbers right-aligned. */
export function printTable(rows: readonly (readonly string[])[], leftColumns: readonly number[] = [0]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  for (const r of rows) {
    const cells = r.map((v, c) => (leftColumns.includes(c) ? v.padEnd(widths[c]!) : v.padStart(widths[c]!)));
    console.log(cells.join('  ').trimEnd());
  }
}
