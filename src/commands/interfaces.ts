/** `mirrorcap interfaces`: what --source pcap:<iface> can open, as libpcap (cap) lists it. */
import { loadCap } from '../source/libpcap.js';

export const INTERFACES_HELP = `Usage: mirrorcap interfaces

Lists the network interfaces libpcap can open for --source pcap:<iface>, with their
addresses. Needs the optional cap module (libpcap bindings, built at npm ci when
libpcap-dev is installed), and root or CAP_NET_RAW to capture on them.
Exit status: 0, or 2 when the cap module is missing.
`;

export function interfacesCommand(): number {
  const cap = loadCap();
  if (!cap.ok) {
    process.stderr.write(`mirrorcap interfaces: ${cap.reason}\n`);
    return 2;
  }
  const devices = cap.cap.Cap.deviceList();
  for (const d of devices) {
    const addrs = d.addresses.map((a) => a.addr).filter(Boolean);
    process.stdout.write(`${d.name.padEnd(20)} ${addrs.join(' ').padEnd(40)} ${d.description ?? ''}\n`.replace(/\s+\n$/, '\n'));
  }
  if (devices.length === 0) process.stdout.write('(libpcap found no interfaces it may open: are you root or do you have CAP_NET_RAW?)\n');
  return 0;
}
