/**
 * Kernel drop counter of a UDP socket we did not open ourselves (node:dgram), read from
 * the "drops" column of /proc/net/udp or /proc/net/udp6. Read at scrape time only.
 */
import { readFile } from 'node:fs/promises';

/** Sum of drops of the sockets bound to `port` (the column after the inode, 13th). Null when unreadable. */
export async function udpSocketDrops(port: number, ipv6: boolean): Promise<number | null> {
  let text: string;
  try {
    text = await readFile(ipv6 ? '/proc/net/udp6' : '/proc/net/udp', 'utf8');
  } catch {
    return null;
  }
  const want = port.toString(16).toUpperCase().padStart(4, '0');
  let drops = 0;
  let found = false;
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 13) continue;
    const local = cols[1]!;
    if (local.slice(local.indexOf(':') + 1) !== want) continue;
    found = true;
    drops += Number(cols[12]);
  }
  return found ? drops : null;
}
