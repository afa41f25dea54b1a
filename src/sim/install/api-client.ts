// The simulator's door into its API server (src/sim/kube-api/main.ts): JSON over the
// administrator's Unix socket in the cluster directory. What the kubelet and the controllers
// of a real cluster ask: tokens for projected volumes, ConfigMaps and Secrets to mount,
// objects to create and delete.

import http from 'node:http';
import { WeftError } from '../../core/errors.ts';
import { SimErrors } from '../errors.ts';

/** The simulated API server's administrator token (kube-api/server.ts). */
const ADMIN_TOKEN = 'weft-test-token';

type Body = Record<string, unknown>;

export class SimApiClient {
  readonly #socketPath: string;

  constructor(socketPath: string) {
    this.#socketPath = socketPath;
  }

  request(method: string, path: string, body?: unknown): Promise<{ status: number; body: Body }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request({
        socketPath: this.#socketPath, method, path,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }) },
        timeout: 10_000,
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Body;
          try {
            parsed = JSON.parse(text) as Body;
          } catch {
            parsed = { message: text };
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 10 s`)));
      req.on('error', (err) => reject(new WeftError(SimErrors.COMMAND_FAILED, `the simulated API server (${this.#socketPath}) did not answer ${method} ${path}: ${err.message}`, { cause: err })));
      req.end(payload);
    });
  }

  /** The object at `path`, or undefined on 404. */
  async get(path: string): Promise<Body | undefined> {
    const r = await this.request('GET', path);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new WeftError(SimErrors.COMMAND_FAILED, `GET ${path}: HTTP ${r.status}: ${String(r.body.message)}`);
    return r.body;
  }

  /** Creates the object in its collection at `collectionPath`; replaces it when it exists. */
  async put(collectionPath: string, object: Body): Promise<Body> {
    const name = String((object.metadata as Body | undefined)?.name);
    const created = await this.request('POST', collectionPath, object);
    if (created.status === 201) return created.body;
    if (created.status !== 409) throw new WeftError(SimErrors.COMMAND_FAILED, `POST ${collectionPath}: HTTP ${created.status}: ${String(created.body.message)}`);
    const replaced = await this.request('PUT', `${collectionPath}/${name}`, object);
    if (replaced.status !== 200) throw new WeftError(SimErrors.COMMAND_FAILED, `PUT ${collectionPath}/${name}: HTTP ${replaced.status}: ${String(replaced.body.message)}`);
    return replaced.body;
  }

  async remove(path: string): Promise<void> {
    const r = await this.request('DELETE', path);
    if (r.status !== 200 && r.status !== 404) throw new WeftError(SimErrors.COMMAND_FAILED, `DELETE ${path}: HTTP ${r.status}: ${String(r.body.message)}`);
  }

  /** TokenRequest, as the kubelet makes for a projected serviceAccountToken (bound to the pod). */
  async token(namespace: string, serviceAccount: string, audiences: readonly string[], expirationSeconds: number, pod: { name: string; uid: string }): Promise<string> {
    const path = `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`;
    const r = await this.request('POST', path, {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest',
      spec: { audiences, expirationSeconds, boundObjectRef: { kind: 'Pod', apiVersion: 'v1', name: pod.name, uid: pod.uid } },
    });
    const token = (r.body.status as { token?: unknown } | undefined)?.token;
    if (r.status !== 201 || typeof token !== 'string') throw new WeftError(SimErrors.COMMAND_FAILED, `POST ${path}: HTTP ${r.status}: ${String(r.body.message)}`);
    return token;
  }
}
