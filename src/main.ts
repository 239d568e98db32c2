#!/usr/bin/env node
/**
 * The command line. Exit status: 0 on success, 2 for a bad command line, configuration or
 * environment, 1 when the work itself failed (the appliance could not start, a capture
 * file is corrupt).
 */
import { decapCommand, DECAP_HELP } from './commands/decap.js';
import { indexCommand, INDEX_HELP } from './commands/indexes.js';
import { queryCommand, QUERY_HELP } from './commands/query.js';
import { interfacesCommand, INTERFACES_HELP } from './commands/interfaces.js';
import { replayCommand, REPLAY_HELP } from './commands/replay.js';
import { runCommand, RUN_HELP } from './commands/run.js';
import { noArguments, orUsageError, usageError, VERSION } from './commands/common.js';
import { parseFlags } from './config.js';

const USAGE = `mirrorcap ${VERSION}: VXLAN mirror target → per-session rotating pcap files

Commands:
  mirrorcap [run] [options]                 the appliance: receive VXLAN, write pcap files
  mirrorcap decap <capture> --out DIR       a capture of VXLAN traffic → the same files, offline
  mirrorcap replay <capture> --target H:P   send a capture's frames as VXLAN, as AWS mirroring does
  mirrorcap query [EXPR] [options]          stored packets by filter and time, as one pcap
  mirrorcap index DIR...                    index captures written earlier or by decap
  mirrorcap interfaces                      the interfaces --source pcap:<iface> can open
  mirrorcap help [command]                  help
  mirrorcap version                         the version

`;

const VERSION_HELP = `Usage: mirrorcap version

Prints mirrorcap's version.
`;

const HELP_HELP = `Usage: mirrorcap help [command]

Prints the help of a command (run, decap, replay, query, index, interfaces, version, help), or without
one the list of commands and the options of run. \`mirrorcap <command> --help\` does the same.
`;

const HELP: Readonly<Record<string, string>> = {
  run: RUN_HELP,
  decap: DECAP_HELP,
  replay: REPLAY_HELP,
  query: QUERY_HELP,
  index: INDEX_HELP,
  interfaces: INTERFACES_HELP,
  version: VERSION_HELP,
  help: HELP_HELP,
};

// `mirrorcap interfaces | head`: a reader that goes away is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

/** `mirrorcap help [command]`: the help asked for, or exit 2 for a topic that is not a command. */
function help(args: readonly string[]): void {
  const { positional } = orUsageError(() => parseFlags(args, [], 'mirrorcap help'));
  if (positional.length > 1) usageError(`help takes one command, got ${positional.length} (see mirrorcap help help)`);
  const topic = positional[0];
  if (topic === undefined) return void process.stdout.write(USAGE + RUN_HELP);
  const text = Object.hasOwn(HELP, topic) ? HELP[topic] : undefined;
  if (text === undefined) usageError(`unknown command "${topic}" (see mirrorcap --help)`);
  process.stdout.write(text);
}

async function main(): Promise<void> {
  const [first, ...rest] = process.argv.slice(2);
  const wantsHelp = rest.includes('--help') || rest.includes('-h');
  switch (first) {
    case 'help':
    case '--help':
    case '-h':
      return help(wantsHelp ? ['help'] : rest);
    case 'version':
    case '--version':
    case '-V':
      if (wantsHelp) return void process.stdout.write(VERSION_HELP);
      noArguments('version', rest);
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
    case 'query':
      if (wantsHelp) return void process.stdout.write(QUERY_HELP);
      process.exitCode = await queryCommand(rest);
      return;
    case 'index':
      if (wantsHelp) return void process.stdout.write(INDEX_HELP);
      process.exitCode = await indexCommand(rest);
      return;
    case 'interfaces':
      if (wantsHelp) return void process.stdout.write(INTERFACES_HELP);
      noArguments('interfaces', rest);
      process.exitCode = interfacesCommand();
      return;
    case 'run':
      if (wantsHelp) return void process.stdout.write(RUN_HELP);
      return runCommand(rest);
    case undefined:
      return runCommand([]);
    default:
      if (first.startsWith('-')) {
        // `mirrorcap --snaplen 100 --help`: the options of run, as for `mirrorcap run --help`.
        if (wantsHelp) return void process.stdout.write(RUN_HELP);
        return runCommand([first, ...rest]);
      }
      usageError(`unknown command "${first}" (see mirrorcap --help)`);
  }
}

await main();
