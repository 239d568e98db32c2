/** Sessions for router tests: plain objects with the config a real Session exposes, and nothing else. */
import type { SessionConfig } from '../../src/config.js';
import type { Session } from '../../src/session/session.js';

/** A stand-in for Session: name, vni and config follow reconfigure(), as the real one's do. */
export function fakeSession(config: SessionConfig): Session {
  const session = {
    config,
    get name() {
      return session.config.name;
    },
    get vni() {
      return session.config.vni;
    },
    reconfigure(next: SessionConfig) {
      session.config = next;
    },
  };
  return session as unknown as Session;
}
