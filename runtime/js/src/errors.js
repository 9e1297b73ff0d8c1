// Every failure the runtime reports is a TfcError: an Error whose `code` is stable (see tfc.d.ts for the list) and
// whose message says what to do about it.

export class TfcError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'TfcError';
    this.code = code;
  }
}

export const fail = (code, message, cause) => {
  throw new TfcError(code, message, cause === undefined ? undefined : { cause });
};
