/**
 * npm run bench [-- --quick] [-- SECTION ...]: runs every bench section (or the ones
 * named) in order. Each section is a module exporting run({ quick }) that prints its own
 * table, with a baseline measured in the same run. The whole run takes about 5 minutes
 * (the appliance section most of it); --quick about 1. The soak section runs only when named
 * (npm run bench -- soak): it takes 10 minutes.
 */
interface Section {
  run(opts: { quick: boolean }): Promise<void>;
}

const SECTIONS: [string, () => Promise<Section>][] = [
  ['decode', () => import('./decode.js')],
  ['filter', () => import('./filter.js')],
  ['tunnel', () => import('./tunnel.js')],
  ['receive-rate', () => import('./receive-rate.js')],
  ['reader', () => import('./reader.js')],
  ['compress', () => import('./compress.js')],
  ['query', () => import('./query.js')],
  ['writer', () => import('./writer.js')],
  ['appliance', () => import('./appliance.js')],
  ['cpu-side', () => import('./cpu-side.js')],
  ['jumbo-side', () => import('./jumbo-side.js')],
  ['index-cost', () => import('./index-cost.js')],
  ['index-stall', () => import('./index-stall.js')],
  ['write-behind', () => import('./write-behind.js')],
];
/** Sections too long for a run of everything: only when named. */
const NAMED_ONLY: [string, () => Promise<Section>][] = [['soak', () => import('./soak.js')]];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const only = args.filter((a) => !a.startsWith('--'));
  const all = [...SECTIONS, ...NAMED_ONLY];
  const unknown = only.filter((name) => !all.some(([n]) => n === name));
  if (unknown.length > 0) {
    console.error(`unknown bench section(s): ${unknown.join(', ')}; known: ${all.map(([n]) => n).join(', ')}`);
    process.exitCode = 2;
    return;
  }
  console.log(`mirrorcap bench${quick ? ' (quick)' : ''}: node ${process.version}, ${process.platform}/${process.arch}`);
  const started = performance.now();
  for (const [name, load] of only.length > 0 ? all : SECTIONS) {
    if (only.length > 0 && !only.includes(name)) continue;
    await (await load()).run({ quick });
  }
  console.log(`\nbench took ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

await main();
