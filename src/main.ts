#!/usr/bin/env node
/**
 * The command line: flags → config → app.start(); SIGTERM / SIGINT → app.close().
 * Exit status: 0 after a clean stop, 2 for a bad command line or configuration,
 * 1 when the appliance could not start or stop cleanly.
 */
import { readFileSync } from 'node:fs';
import { App } from './app.js';
import { ConfigError, optionsHelp, parseFlags, resolveConfig } from './config.js';
import { createLogger, type Logger } from './control/log.js';

/** SIGTERM must end the process within 10 s; leave a margin for logging and exit. */
const CLOSE_DEADLINE_MS = 9_000;

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const USAGE = `mirrorcap ${version}: VXLAN mirror target → per-session rotating pcap files

Usage:
  mirrorcap [run] [options]     receive VXLAN (AWS Traffic Mirroring) and write pcap files
  mirrorcap help                this text
  mirrorcap version             the version

Every option can also be set as an environment variable (shown under it) or as a key
in the --config file; flags win over the environment, which wins over the file.
Sizes take KiB/MiB/GiB (1024-based) or KB/MB/GB; durations take ms/s/m/h (bare = seconds).

Options:
${optionsHelp()}

The config file (YAML or JSON) may also list sessions:
  sessions:
    - { vni: 123, name: web-prod, snaplen: 256, rotate-size: 1GiB, ring: 48 }
    - { vni: 7, name: db, source: 10.0.3.17 }     # source only with --session-key vni+src

HTTP: GET /metrics, /healthz, /readyz, /api/sessions, /api/files
`;

function usageError(message: string): never {
  process.stderr.write(`mirrorcap: ${message}\n`);
  process.exit(2);
}

async function run(argv: string[]): Promise<void> {
  let config;
  let flags;
  try {
    const parsed = parseFlags(argv);
    flags = parsed.flags;
    if (parsed.positional.length > 0) usageError(`unexpected argument "${parsed.positional[0]}" (see mirrorcap --help)`);
    config = resolveConfig(flags, process.env);
  } catch (err) {
    if (err instanceof ConfigError) usageError(err.message);
    throw err;
  }
  const log = createLogger(config.logLevel);
  const env = { ...process.env };
  let app: App;
  try {
    app = new App(config, log, version, () => resolveConfig(flags, env));
  } catch (err) {
    if (err instanceof ConfigError) usageError(err.message);
    throw err;
  }
  installSignals(app, log);
  try {
    await app.start();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    log.fatal({ event: 'start_failed', code: e.code, err: e.message }, `mirrorcap could not start: ${e.message}`);
    await app.close().catch(() => undefined);
    process.exit(1);
  }
}

function installSignals(app: App, log: Logger): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) {
      log.warn({ event: 'forced_exit', signal }, 'second signal: exiting without waiting for the files');
      process.exit(1);
    }
    stopping = true;
    log.info({ event: 'stopping', signal }, 'stopping');
    const deadline = setTimeout(() => {
      log.error({ event: 'stop_timeout', ms: CLOSE_DEADLINE_MS }, 'files did not close in time; the .part files will be recovered on the next start');
      process.exit(1);
    }, CLOSE_DEADLINE_MS);
    deadline.unref();
    app.close().then(
      () => process.exit(0),
      (err: Error) => {
        log.error({ event: 'stop_failed', err: err.message }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGHUP', () => app.reload());
  process.on('SIGUSR1', () => app.rotateAll());
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('uncaughtException', (err) => {
    log.fatal({ event: 'crash', err: err.stack }, 'uncaught exception');
    stop('uncaughtException');
  });
}

async function main(): Promise<void> {
  const [first, ...rest] = process.argv.slice(2);
  switch (first) {
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    case 'version':
    case '--version':
    case '-V':
      process.stdout.write(`${version}\n`);
      return;
    case 'run':
      return run(rest);
    case undefined:
      return run([]);
    default:
      if (first.startsWith('-')) return run([first, ...rest]);
      usageError(`unknown command "${first}" (see mirrorcap --help)`);
  }
}

await main();
