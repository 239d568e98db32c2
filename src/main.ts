#!/usr/bin/env node
/**
 * The command line. Exit status: 0 on success, 2 for a bad command line, configuration or
 * environment, 1 when the work itself failed (the appliance could not start, a capture
 * file is corrupt).
 */
import { decapCommand, DECAP_HELP } from './commands/decap.js';
import { interfacesCommand } from './commands/interfaces.js';
import { replayCommand, REPLAY_HELP } from './commands/replay.js';
import { runCommand, RUN_HELP } from './commands/run.js';
import { usageError, VERSION } from './commands/common.js';

const USAGE = `mirrorcap ${VERSION}: VXLAN mirror target → per-session rotating pcap files

Commands:
  mirrorcap [run] [options]                 the appliance: receive VXLAN, write pcap files
  mirrorcap decap <capture> --out DIR       a capture of VXLAN traffic → the same files, offline
  mirrorcap replay <capture> --target H:P   send a capture's frames as VXLAN, as AWS mirroring does
  mirrorcap interfaces                      the interfaces --source pcap:<iface> can open
  mirrorcap help [command]                  help
  mirrorcap version                         the version

`;

const HELP: Readonly<Record<string, string>> = { run: RUN_HELP, decap: DECAP_HELP, replay: REPLAY_HELP };

// `mirrorcap interfaces | head`: a reader that goes away is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

async function main(): Promise<void> {
  const [first, ...rest] = process.argv.slice(2);
  const wantsHelp = rest.includes('--help') || rest.includes('-h');
  switch (first) {
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(rest[0] && HELP[rest[0]] ? HELP[rest[0]] : USAGE + RUN_HELP);
      return;
    case 'version':
    case '--version':
    case '-V':
      process.stdout.write(`${VERSION}\n`);
      return;
    case 'decap':
      if (wantsHelp) return void process.stdout.write(DECAP_HELP);
      process.exitCode = await decapCommand(rest);
      return;
    case 'replay':
      if (wantsHelp) return void process.stdout.write(REPLAY_HELP);
      process.exitCode = await replayCommand(rest);
      return;
    case 'interfaces':
      process.exitCode = interfacesCommand();
      return;
    case 'run':
      if (wantsHelp) return void process.stdout.write(RUN_HELP);
      return runCommand(rest);
    case undefined:
      return runCommand([]);
    default:
      if (first.startsWith('-')) return runCommand([first, ...rest]);
      usageError(`unknown command "${first}" (see mirrorcap --help)`);
  }
}

await main();
