// Error codes of telemetry. Callers branch on the code, never on the message.

import { WeftError, weftError } from '../core/errors.ts';

export const TelemetryErrors = {
  /** An option is out of range or malformed. */
  BAD_OPTION: 'WEFT_TELEMETRY_BAD_OPTION',
  /** The admin server may only listen on a loopback address. */
  ADMIN_NOT_LOOPBACK: 'WEFT_TELEMETRY_ADMIN_NOT_LOOPBACK',
  /** An HTTP endpoint could not bind. */
  LISTEN_FAILED: 'WEFT_TELEMETRY_LISTEN_FAILED',
} as const;

export type TelemetryErrorCode = (typeof TelemetryErrors)[keyof typeof TelemetryErrors];

export const telemetryError: (code: TelemetryErrorCode, message: string, cause?: unknown) => WeftError = weftError;
