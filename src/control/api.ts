/** The JSON of /api/sessions and /api/files: built when asked, never on the packet path. */
import type { Catalog, FinishedFile } from '../capture/catalog.js';
import { COMPRESSED_SUFFIX } from '../capture/naming.js';
import type { S3Step } from '../finish/s3-step.js';
import type { Session } from '../session/session.js';

const TOP_TALKERS = 10;

export function sessionsJson(sessions: readonly Session[], catalog: Catalog): unknown {
  return sessions.map((s) => {
    const { output, truncated, receiveTruncated, ...counts } = s.snapshot();
    const cur = output.current;
    return {
      ...counts,
      writtenPackets: output.writtenPackets,
      writtenBytes: output.writtenBytes,
      bufferedBytes: output.heldBytes,
      currentFile: cur === null ? null : { path: cur.path, bytes: cur.bytes, packets: cur.packets, first: isoNs(cur.firstSec, cur.firstNsec) },
      finishedFiles: catalog.filesOf(s.name).length,
      truncatedPackets: truncated,
      receiveTruncatedPackets: receiveTruncated,
      topTalkers: s.topTalkers(TOP_TALKERS),
    };
  });
}

/**
 * compression: gzip, zstd or null (as written). upload (with --s3): uploaded, pending (queued,
 * under way or retrying) or failed (the uploader gave up on it: the log says why); null without --s3.
 */
export function filesJson(catalog: Catalog, s3: S3Step | null = null): unknown {
  return catalog.all().map((f: FinishedFile) => ({
    session: f.session,
    path: f.path,
    bytes: f.bytes,
    artefacts: f.artefacts,
    pending: f.pending,
    compression: f.path.endsWith(COMPRESSED_SUFFIX.gzip) ? 'gzip' : f.path.endsWith(COMPRESSED_SUFFIX.zstd) ? 'zstd' : null,
    upload: s3 === null ? null : s3.uploaded(f) ? 'uploaded' : f.pending.includes(s3.name) ? 'pending' : 'failed',
    packets: f.packets,
    first: f.first && isoNs(f.first[0], f.first[1]),
    last: f.last && isoNs(f.last[0], f.last[1]),
  }));
}

function isoNs(sec: number, nsec: number): string {
  return `${new Date(sec * 1000).toISOString().slice(0, 19)}.${String(nsec).padStart(9, '0')}Z`;
}
