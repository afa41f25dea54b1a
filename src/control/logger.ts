// The logging contract control components need; a pino Logger satisfies it. Passed in by
// the app, never a module-level default.

export interface ControlLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

const nothing = (): void => undefined;

export const silentLogger: ControlLogger = Object.freeze({ debug: nothing, info: nothing, warn: nothing, error: nothing });
