/**
 * npm run bench [-- --quick]: runs every bench section in order. Each section
 * is a module exporting run({ quick }) that prints its own table, with a
 * baseline measured in the same run.
 */
interface Section {
  run(opts: { quick: boolean }): Promise<void>;
}

const SECTIONS: [string, () => Promise<Section>][] = [
  ['decode', () => import('./decode.js')],
  ['receive-rate', () => import('./receive-rate.js')],
  ['reader', () => import('./reader.js')],
];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const only = args.filter((a) => !a.startsWith('--'));
  const unknown = only.filter((name) => !SECTIONS.some(([n]) => n === name));
  if (unknown.length > 0) {
    console.error(`unknown bench section(s): ${unknown.join(', ')}; known: ${SECTIONS.map(([n]) => n).join(', ')}`);
    process.exitCode = 2;
    return;
  }
  console.log(`mirrorcap bench${quick ? ' (quick)' : ''}: node ${process.version}, ${process.platform}/${process.arch}`);
  for (const [name, load] of SECTIONS) {
    if (only.length > 0 && !only.includes(name)) continue;
    await (await load()).run({ quick });
  }
}

await main();
