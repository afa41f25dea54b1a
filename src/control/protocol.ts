// The wire protocol: control.proto loaded once at import, and TypeScript shapes of its
// messages as @grpc/proto-loader decodes them (camelCase fields, bytes as Buffer, defaults
// filled in). See control.proto for what each field means.

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export interface WireResource {
  type: string;
  name: string;
  version: string;
  body: Buffer;
}

export interface WireResourceError {
  key: string;
  version: string;
  message: string;
}

export interface DeltaRequest {
  node: string;
  initialVersions: Record<string, string>;
  responseNonce: string;
  errorMessage: string;
  rejected: WireResourceError[];
}

export interface DeltaResponse {
  systemVersion: string;
  nonce: string;
  resources: WireResource[];
  removed: string[];
  /** More responses of this push follow (see control.proto). */
  more: boolean;
}

export interface SignCertificateRequest {
  csrPem: string;
  identity: string;
}

export interface SignCertificateResponse {
  certPem: string;
  chainPem: string[];
}

export interface BootstrapRequest {
  csrPem: string;
  node: string;
}

export interface BootstrapResponse {
  certPem: string;
  chainPem: string[];
  trustBundlePem: string;
}

/** Metadata key carrying a WeftError code next to a refusal's status. */
export const ERROR_CODE_METADATA = 'weft-error-code';
/** Metadata key of the bootstrap token: `authorization: Bearer <token>`. */
export const AUTHORIZATION_METADATA = 'authorization';

const definition = loadSync(fileURLToPath(new URL('./control.proto', import.meta.url)), {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
});

const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  weft: { control: { v1: { Control: grpc.ServiceClientConstructor } } };
};

/** The Control service, for `server.addService`. */
export const controlService: grpc.ServiceDefinition = loaded.weft.control.v1.Control.service;

/** The generated client class; wrapped by ControlClient, not used directly elsewhere. */
export const ControlStub: grpc.ServiceClientConstructor = loaded.weft.control.v1.Control;

/** What a ControlStub instance offers, typed. */
export interface ControlStubMethods {
  DeltaResources(metadata?: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<DeltaRequest, DeltaResponse>;
  SignCertificate(
    request: SignCertificateRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, response?: SignCertificateResponse) => void,
  ): grpc.ClientUnaryCall;
  BootstrapNodeCertificate(
    request: BootstrapRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, response?: BootstrapResponse) => void,
  ): grpc.ClientUnaryCall;
  close(): void;
}
