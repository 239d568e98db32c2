/**
 * What the router keys a session by, as one number: a VXLAN VNI (24 bits) as it is; above
 * them, a GENEVE VNI of an Ethernet payload, and a Gateway Load Balancer endpoint (whose
 * 64-bit id gets a small slot number here, since a number cannot hold it exactly).
 *
 *   0x0000000 + VXLAN VNI       vni-<n>       (VXLAN direct, or inside GENEVE)
 *   0x1000000 + GENEVE VNI      geneve-<n>    (GENEVE carrying Ethernet)
 *   0x2000000 + endpoint slot   gwlbe-<id>    (GENEVE carrying IP that is not VXLAN, from a GWLB)
 *   0x3000000 + GENEVE VNI      geneve-<n>-ip (the same from another sender: Google Cloud packet
 *                                              mirroring, say; no endpoint id, so the VNI keys it)
 */
import type { SessionConfig } from '../config.js';

export const KEY_GENEVE = 0x1000000;
export const KEY_GWLBE = 0x2000000;
export const KEY_GENEVE_IP = 0x3000000;
export const VNI_MASK = 0xffffff;

/** How a session's packets arrive (its key's space); undefined for VXLAN. */
export function encapOf(key: number): SessionConfig['encap'] {
  return key >= KEY_GENEVE_IP ? 'geneve-ip' : key >= KEY_GWLBE ? 'gwlbe' : key >= KEY_GENEVE ? 'geneve' : undefined;
}

/**
 * GWLB endpoint ids seen, each given a slot: few of them (one per endpoint), so a linear scan
 * after a one-entry cache, over typed arrays; bounded, allocation-free on the hot path.
 */
export class EndpointSlots {
  private readonly hi: Uint32Array;
  private readonly lo: Uint32Array;
  private count = 0;
  private last = -1;

  constructor(readonly capacity: number) {
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
  }

  /** The router key of an endpoint id, giving it a slot the first time; -1 when every slot is taken. */
  key(hi: number, lo: number): number {
    const l = this.last;
    if (l >= 0 && this.hi[l] === hi && this.lo[l] === lo) return KEY_GWLBE + l;
    for (let i = 0; i < this.count; i++) {
      if (this.hi[i] === hi && this.lo[i] === lo) {
        this.last = i;
        return KEY_GWLBE + i;
      }
    }
    if (this.count === this.capacity) return -1;
    const i = this.count++;
    this.hi[i] = hi;
    this.lo[i] = lo;
    this.last = i;
    return KEY_GWLBE + i;
  }

  /** The endpoint id of a gwlbe key as 16 hex digits (AWS prints it after `vpce-`). */
  idOf(key: number): string {
    const i = key - KEY_GWLBE;
    return hex64(this.hi[i]!, this.lo[i]!);
  }
}

/** A 64-bit id from its halves as 16 hex digits. Not per packet. */
export function hex64(hi: number, lo: number): string {
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}
