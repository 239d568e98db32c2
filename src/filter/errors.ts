/**
 * The one error the filter module throws: a filter that cannot be compiled, with where it
 * went wrong. `position` is a 0-based character offset into the filter text (the expression's
 * length for "at the end"); `word` is the text found there as written ('' at the end; the whole
 * expression when the fault is the expression as a whole, like "rejects all packets").
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
    super(`${detail} (${word === '' ? 'at the end' : `'${word.length > 40 ? `${word.slice(0, 40)}...` : word}'`}, position ${position})`);
  }
}
