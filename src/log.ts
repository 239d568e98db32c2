/** JSON lines, one per lifecycle event; never per packet. The appliance logs to stdout, tools to stderr. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, fd: 1 | 2 = 1): Logger {
  return pino(
    {
      level,
      base: { app: 'mirrorcap' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: fd, sync: true }),
  );
}
