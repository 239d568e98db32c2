#!/usr/bin/env node
/**
 * The command line. Exit status: 0 on success, 2 for a bad command line, configuration or
 * environment, 1 when the work itself failed (the appliance could not start, a capture
 * file is corrupt).
 */
import { noArguments, orUsageError, usageError, VERSION } from './commands/common.js';
import { parseFlags } from './config.js';

/**
 * A subcommand: its help and what runs it (resolving an exit status, or nothing for run).
 * Each is imported only when named, so `mirrorcap query` does not load the appliance (the S3
 * client, prom-client, pino, the capture sources): startup is part of a query's latency.
 */
interface Command {
  readonly help: string;
  run(argv: string[]): Promise<number | void> | number;
}

const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  run: () => import('./commands/run.js').then((m) => ({ help: m.RUN_HELP, run: m.runCommand })),
  decap: () => import('./commands/decap.js').then((m) => ({ help: m.DECAP_HELP, run: m.decapCommand })),
  replay: () => import('./commands/replay.js').then((m) => ({ help: m.REPLAY_HELP, run: m.replayCommand })),
  query: () => import('./commands/query.js').then((m) => ({ help: m.QUERY_HELP, run: m.queryCommand })),
  index: () => import('./commands/indexes.js').then((m) => ({ help: m.INDEX_HELP, run: m.indexCommand })),
  interfaces: () =>
    import('./commands/interfaces.js').then((m) => ({
      help: m.INTERFACES_HELP,
      run: (argv: string[]) => {
        noArguments('interfaces', argv);
        return m.interfacesCommand();
      },
    })),
};

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


// `mirrorcap interfaces | head`: a reader that goes away is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

/** `mirrorcap help [command]`: the help asked for, or exit 2 for a topic that is not a command. */
async function help(args: readonly string[]): Promise<void> {
  const { positional } = orUsageError(() => parseFlags(args, [], 'mirrorcap help'));
  if (positional.length > 1) usageError(`help takes one command, got ${positional.length} (see mirrorcap help help)`);
  const topic = positional[0];
  if (topic === undefined) return void process.stdout.write(USAGE + (await COMMANDS.run!()).help);
  if (topic === 'version') return void process.stdout.write(VERSION_HELP);
  if (topic === 'help') return void process.stdout.write(HELP_HELP);
  const load = Object.hasOwn(COMMANDS, topic) ? COMMANDS[topic] : undefined;
  if (load === undefined) usageError(`unknown command "${topic}" (see mirrorcap --help)`);
  process.stdout.write((await load()).help);
}

/** Runs `command` with argv, or prints its help when argv asks for it. */
async function dispatch(command: string, argv: string[], wantsHelp: boolean): Promise<void> {
  const c = await COMMANDS[command]!();
  if (wantsHelp) return void process.stdout.write(c.help);
  const status = await c.run(argv);
  if (typeof status === 'number') process.exitCode = status;
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
    case undefined:
      return dispatch('run', [], false);
    default:
      if (Object.hasOwn(COMMANDS, first)) return dispatch(first, rest, wantsHelp);
      // `mirrorcap --snaplen 100 [--help]`: the options of run, as for `mirrorcap run`.
      if (first.startsWith('-')) return dispatch('run', [first, ...rest], wantsHelp);
      usageError(`unknown command "${first}" (see mirrorcap --help)`);
  }
}

await main();
