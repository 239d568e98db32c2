/**
 * VXLAN header, RFC 7348 section 5:
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |R|R|R|R|I|R|R|R|            Reserved                           |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  |                VXLAN Network Identifier (VNI) |   Reserved    |
 *  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Only the I flag is checked: the RFC says the R bits are ignored on receive, and
 * group-policy (VXLAN-GBP) senders set some of them and the reserved bytes.
 */
export const VXLAN_PORT = 4789;
export const VXLAN_HEADER_LEN = 8;
export const VXLAN_FLAG_I = 0x08;
const OFF_FLAGS = 0;
const OFF_VNI = 4;
/** VXLAN header plus the smallest Ethernet header. */
export const VXLAN_MIN_DATAGRAM = VXLAN_HEADER_LEN + 14;

export function vxlanHasVni(buf: Uint8Array, off: number): boolean {
  return (buf[off + OFF_FLAGS]! & VXLAN_FLAG_I) !== 0;
}

export function vxlanVni(buf: Uint8Array, off: number): number {
  return (buf[off + OFF_VNI]! << 16) | (buf[off + OFF_VNI + 1]! << 8) | buf[off + OFF_VNI + 2]!;
}

/** Writes a VXLAN header as AWS Traffic Mirroring sends it: I flag, the VNI, zero reserved bits. */
export function writeVxlanHeader(dst: Uint8Array, off: number, vni: number): void {
  dst.fill(0, off, off + VXLAN_HEADER_LEN);
  dst[off + OFF_FLAGS] = VXLAN_FLAG_I;
  dst[off + OFF_VNI] = (vni >>> 16) & 0xff;
  dst[off + OFF_VNI + 1] = (vni >>> 8) & 0xff;
  dst[off + OFF_VNI + 2] = vni & 0xff;
}
