// The base of every error weft raises on purpose. Callers branch on `code` (stable,
// documented per module in that module's errors.ts), never on the message.

export class WeftError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WeftError';
    this.code = code;
  }
}

/**
 * The one factory behind every module's error table: `code` comes from that module's table
 * (an `as const` object of stable strings), `cause` is kept when given.
 */
export function weftError(code: string, message: string, cause?: unknown): WeftError {
  return new WeftError(code, message, cause === undefined ? undefined : { cause });
}

/** True when `err` is a WeftError, optionally with the given code. */
export function isWeftError(err: unknown, code?: string): err is WeftError {
  return err instanceof WeftError && (code === undefined || err.code === code);
}

/** A readable one-line description of any thrown value. */
export function describeError(err: unknown): string {
  if (err instanceof WeftError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
