// Error codes of the config sources. Callers branch on these, never on messages.
import { WeftError } from '../../core/errors.ts';

export const SourceErrors = {
  /** The configured directory does not exist or is not a directory. */
  NO_DIRECTORY: 'WEFT_SOURCE_NO_DIRECTORY',
  /** start() was called twice, or after close(). */
  BAD_STATE: 'WEFT_SOURCE_BAD_STATE',
  /** The Kubernetes API did not give a first complete list of every kind in time. */
  SYNC_TIMEOUT: 'WEFT_SOURCE_SYNC_TIMEOUT',
  /** A list request to the Kubernetes API failed. */
  LIST_FAILED: 'WEFT_SOURCE_LIST_FAILED',
  /** The Kubernetes source has no current cluster in its kubeconfig. */
  NO_CLUSTER: 'WEFT_SOURCE_NO_CLUSTER',
  /** The kubeconfig cannot be read, or names a context, cluster or user it does not define. */
  BAD_KUBECONFIG: 'WEFT_SOURCE_BAD_KUBECONFIG',
} as const;

export type SourceErrorCode = (typeof SourceErrors)[keyof typeof SourceErrors];

export function sourceError(code: SourceErrorCode, message: string, cause?: unknown): WeftError {
  return new WeftError(code, message, cause === undefined ? undefined : { cause });
}
