// The single import point for @peculiar/x509. It resolves its internals through tsyringe,
// which throws at import unless a Reflect metadata polyfill is loaded first, so the
// polyfill import must stay above the library import.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';

export * as x509 from '@peculiar/x509';

/** Node's WebCrypto, passed explicitly to every @peculiar/x509 call instead of its global provider. */
export const nodeCrypto: webcrypto.Crypto = webcrypto;

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
export type EcKeyAlgorithm = webcrypto.EcKeyAlgorithm;

/** ECDSA P-256 with SHA-256: the only key and signature algorithm weft issues or accepts. */
export const ecdsaP256 = Object.freeze({ name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' });
