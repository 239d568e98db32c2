/**
 * The one error the filter module throws: a filter that cannot be compiled, with where it
 * went wrong. `position` is a 0-based character offset into the filter text (the expression's
 * length for "at the end"); `word` is the token found there ('' at the end).
 *
 * Three kinds, told apart by `reason`:
 *   syntax       libpcap would refuse it too (a syntax error, an address it cannot parse,
 *                a qualifier that does not apply, "expression rejects all packets", ...)
 *   unsupported  a word of the pcap-filter language mirrorcap deliberately does not take
 *                (other link layers, host names, MPLS, ...): refused rather than answered
 *                differently
 *   name         a service, protocol or host name outside mirrorcap's fixed tables (no DNS,
 *                no /etc/services): use the number
 */
export type FilterErrorReason = 'syntax' | 'unsupported' | 'name';

export class FilterError extends Error {
  readonly code = 'ERR_MIRRORCAP_FILTER';
  override readonly name = 'FilterError';

  constructor(
    readonly reason: FilterErrorReason,
    readonly position: number,
    readonly word: string,
    detail: string,
  ) {
    super(`${detail} (${word === '' ? 'at the end' : `'${word}'`}, position ${position})`);
  }
}
