// The mesh model: what weft knows about the cluster. Plain frozen data; lookups live in
// model/state.ts, parsing in model/manifests.ts.

export type Labels = Readonly<Record<string, string>>;

/** The label (on a Namespace or a Pod) that puts workloads in the mesh. */
export const MESH_LABEL = 'weft.dev/mesh';
export const MESH_ENABLED = 'enabled';

export interface NamespaceObject {
  readonly name: string;
  readonly labels: Labels;
}

export interface PodObject {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** The node the pod is scheduled on; undefined when the manifest leaves it to the scheduler. */
  readonly nodeName: string | undefined;
  /** Pod IP when known (status.podIP); the simulator assigns one otherwise. */
  readonly ip: string | undefined;
  readonly labels: Labels;
  /** Ports the containers declare (informational). */
  readonly containerPorts: readonly number[];
}

export interface ServicePort {
  readonly name: string | undefined;
  readonly port: number;
  readonly targetPort: number;
  readonly protocol: 'TCP';
}

export interface ServiceObject {
  readonly name: string;
  readonly namespace: string;
  /** spec.clusterIP: the virtual IP clients call. */
  readonly vip: string;
  readonly ports: readonly ServicePort[];
  readonly selector: Labels;
}

/** Where a parsed object came from, for error messages: file and document index. */
export interface SourceRef {
  readonly file: string;
  readonly doc: number;
}
