/**
 * The index thread (index-encoder.ts starts it): takes a builder's parts, their memory
 * transferred here, and answers with the sidecar's bytes and that memory, transferred back. Sorting the key
 * logs and encoding is all it does, so the event loop, which receives the datagrams, never
 * waits for it (100-400 ms for a 64 MiB file of 50,000 flows).
 *
 *   { id, parts, captureSize, captureMtimeMs } ──encodeParts──▶ { id, ok, body, returned (the parts' memory), ms }
 */
import { parentPort } from 'node:worker_threads';
import { encodeParts, transferOf, type IndexParts } from './index-encode.js';

export interface EncodeJob {
  readonly id: number;
  readonly parts: IndexParts;
  readonly captureSize: number;
  readonly captureMtimeMs: number;
}

export type EncodeReply =
  /** `returned`: the builder's memory, back for the loop's indexMemory. */
  | { readonly id: number; readonly ok: true; readonly body: Uint8Array; readonly returned: readonly ArrayBuffer[]; readonly ms: number }
  | { readonly id: number; readonly ok: false; readonly code: string; readonly message: string };

if (parentPort !== null) {
  const port = parentPort;
  port.on('message', (job: EncodeJob) => {
    const started = performance.now();
    let body: Uint8Array;
    try {
      body = encodeParts(job.parts, job.captureSize, job.captureMtimeMs);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      port.postMessage({ id: job.id, ok: false, code: e.code ?? 'ERR_MIRRORCAP_INTERNAL', message: e.message } satisfies EncodeReply);
      return;
    }
    // The bytes have their memory to themselves (indexMemory made it for them): it moves whole. So
    // does the builder's, done with, back to the loop, whose next builders reuse it.
    const returned = transferOf(job.parts);
    const reply: EncodeReply = { id: job.id, ok: true, body, returned, ms: performance.now() - started };
    port.postMessage(reply, [body.buffer as ArrayBuffer, ...returned]);
  });
}
