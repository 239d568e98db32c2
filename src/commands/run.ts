/**
 * `mirrorcap [run]`: the appliance. flags → config → app.start(); SIGTERM / SIGINT →
 * app.stop() within 10 s; SIGHUP reloads the config file; SIGUSR1 rotates every file.
 */
import { App } from '../app.js';
import { ConfigError, OPTIONS, optionsHelp, parseFlags, resolveConfig } from '../config.js';
import { createLogger, type Logger } from '../log.js';
import { orUsageError, usageError, VERSION } from './common.js';

/** SIGTERM must end the process within 10 s; leave a margin for logging and exit. */
const CLOSE_DEADLINE_MS = 9_000;
/** Post-rotate commands get the stop deadline less this, left for the summary and the exit. */
const AFTER_POST_ROTATE_MS = 1_000;

export const RUN_HELP = `Usage: mirrorcap [run] [options]

Receives VXLAN (AWS Traffic Mirroring) and writes per-session rotating pcap files.
Every option can also be set as an environment variable (shown under it) or as a key
in the --config file; flags win over the environment, which wins over the file.
Sizes take KiB/MiB/GiB (1024-based) or KB/MB/GB; durations take ms/s/m/h (bare = seconds).

Options:
${optionsHelp(OPTIONS)}

The config file (YAML or JSON) may also list sessions:
  sessions:
    - { vni: 123, name: web-prod, snaplen: 256, rotate-size: 1GiB, ring: 48 }
    - { vni: 7, name: db, source: 10.0.3.17 }     # source only with --session-key vni+src
    - { vni: 9, name: edge, filter: "not tcp port 22" }

HTTP: GET /metrics, /healthz, /readyz, /api/sessions, /api/files,
      /api/stream and /api/sessions/<name>/stream [?filter=EXPR] (live pcap)
Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads the config file, SIGUSR1 rotates every file.
`;

export async function runCommand(argv: string[]): Promise<void> {
  const { flags, positional } = orUsageError(() => parseFlags(argv, OPTIONS, 'mirrorcap run'));
  if (positional.length > 0) usageError(`unexpected argument "${positional[0]}" (see mirrorcap --help)`);
  const config = orUsageError(() => resolveConfig(flags, process.env));
  const log = createLogger(config.logLevel);
  const env = { ...process.env };
  const app = orUsageError(() => new App(config, log, VERSION, () => resolveConfig(flags, env)));
  installSignals(app, log);
  try {
    await app.start();
  } catch (err) {
    await app.stop(Date.now() + CLOSE_DEADLINE_MS - AFTER_POST_ROTATE_MS).catch(() => undefined);
    if (err instanceof ConfigError) usageError(err.message);
    const e = err as NodeJS.ErrnoException;
    log.fatal({ event: 'start_failed', code: e.code, err: e.message }, `mirrorcap could not start: ${e.message}`);
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
    app.stop(Date.now() + CLOSE_DEADLINE_MS - AFTER_POST_ROTATE_MS).then(
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
