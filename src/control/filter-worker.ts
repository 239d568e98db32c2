/**
 * Compiles one live stream's filter off the event loop: libpcap's optimizer can take a second
 * on a long expression, and the event loop is where packets are received. The program (plain
 * instructions) comes back; the caller turns it into a match function (filter/matcherOf).
 *
 *   serveHttp ──text──▶ worker: compileFilter ──program | FilterError fields──▶ matcherOf(program)
 */
import { parentPort, workerData } from 'node:worker_threads';
import { compileFilter, FilterError } from '../filter/index.js';

export type CompileReply =
  | { readonly ok: true; readonly program: unknown }
  | { readonly ok: false; readonly message: string; readonly reason: string; readonly position: number; readonly word: string };

const text = (workerData as { text: string }).text;
let reply: CompileReply;
try {
  reply = { ok: true, program: compileFilter(text).program };
} catch (err) {
  if (!(err instanceof FilterError)) throw err;
  reply = { ok: false, message: err.message, reason: err.reason, position: err.position, word: err.word };
}
parentPort!.postMessage(reply);
