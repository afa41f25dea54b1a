// The mesh model: what weft knows about the cluster. Plain frozen data; lookups live in
// model/state.ts, parsing in model/manifests.ts.

import type { RouteObject } from './route-types.ts';
import type { TrafficPolicyObject } from './traffic-policy-types.ts';

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
  /** metadata.uid: how the kubelet names the pod's cgroup (where eBPF capture attaches). */
  readonly uid?: string | undefined;
  readonly serviceAccount: string;
  /** The node the pod is scheduled on; undefined when the manifest leaves it to the scheduler. */
  readonly nodeName: string | undefined;
  /** The pod's IPv4 address when known (status.podIP / podIPs); the simulator assigns one otherwise. */
  readonly ip: string | undefined;
  /** IPv6 addresses from status.podIP / podIPs, when it has any (weft refuses to enrol such a pod). */
  readonly ipv6?: readonly string[];
  readonly labels: Labels;
  /** Ports the containers declare (informational). */
  readonly containerPorts: readonly number[];
  /** The containers' named ports (name -> containerPort), when any has a name: a Service's named targetPort resolves here. */
  readonly namedPorts?: Readonly<Record<string, number>>;
  /** status.phase; pods that Succeeded or Failed are not workloads (their IP may be reused). */
  readonly phase?: string | undefined;
  /** spec.hostNetwork; such pods share the node's IP and are never part of the mesh. */
  readonly hostNetwork?: boolean | undefined;
}

export interface ServicePort {
  /** Also a protocol hint: Istio's prefixes `http-`, `http2-`, `grpc-`, `tcp-` (see model/protocol.ts). */
  readonly name: string | undefined;
  readonly port: number;
  /** A port number, or the name of a container port of each selected pod (IntOrString, as in Kubernetes). */
  readonly targetPort: number | string;
  readonly protocol: 'TCP';
  /** spec.ports[].appProtocol as written (`http`, `kubernetes.io/h2c`, `grpc`, ...); it wins over the name. */
  readonly appProtocol?: string | undefined;
}

export interface ServiceObject {
  readonly name: string;
  readonly namespace: string;
  /** spec.clusterIP: the virtual IP clients call. */
  readonly vip: string;
  readonly ports: readonly ServicePort[];
  readonly selector: Labels;
}

/** A cluster node, as far as the mesh cares: where other nodes' agents reach its agent. */
export interface NodeObject {
  readonly name: string;
  readonly labels: Labels;
  /** status.addresses: the IPv4 InternalIP, else the first IPv4 ExternalIP. */
  readonly address: string;
}

/** Where a parsed object came from, for error messages: file and document index. */
export interface SourceRef {
  readonly file: string;
  readonly doc: number;
}

/** Namespace whose AuthorizationPolicies apply mesh-wide (as Istio's root namespace). */
export const ROOT_NAMESPACE = 'weft-system';
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
/** apiVersion of weft's own kinds. */
export const WEFT_API_VERSION = 'weft.dev/v1alpha1';
/** Annotation that makes an AuthorizationPolicy evaluated but not enforced. */
export const DRY_RUN_ANNOTATION = 'weft.dev/dry-run';
/** Label on an EndpointSlice naming the Service it belongs to. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface ServiceAccountObject {
  readonly name: string;
  readonly namespace: string;
}

export interface EndpointSlicePort {
  /** Matches the Service port of the same name; undefined matches an unnamed Service port. */
  readonly name: string | undefined;
  readonly port: number;
}

export interface EndpointSliceEndpoint {
  readonly addresses: readonly string[];
  /** conditions.ready; an absent condition counts as ready, as Kubernetes says. */
  readonly ready: boolean;
  readonly nodeName: string | undefined;
  /** Name of the Pod in the slice's namespace, from targetRef (kind Pod). */
  readonly podName: string | undefined;
}

export interface EndpointSliceObject {
  readonly name: string;
  readonly namespace: string;
  /** From the kubernetes.io/service-name label. */
  readonly serviceName: string;
  readonly ports: readonly EndpointSlicePort[];
  readonly endpoints: readonly EndpointSliceEndpoint[];
}

export type PolicyAction = 'ALLOW' | 'DENY';

/** One `from[].source`: every field present must hold; each list matches when any entry does. */
export interface PolicySource {
  /** Full SPIFFE ids, or patterns with one leading or trailing `*`. */
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  /** IPv4 CIDRs (a bare address means /32). */
  readonly ipBlocks?: readonly string[];
  readonly notIpBlocks?: readonly string[];
}

/** One `to[].operation`. The HTTP fields (Istio's) hold only for requests the destination agent parses. */
export interface PolicyOperation {
  readonly ports?: readonly number[];
  readonly notPorts?: readonly number[];
  /** HTTP methods, exact (gRPC calls are POST). */
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  /** Request paths without the query: exact, `prefix*`, `*suffix` or `*` (gRPC: `/package.Service/Method`). */
  readonly paths?: readonly string[];
  readonly notPaths?: readonly string[];
  /** Host or :authority without its port, case-insensitive, with one leading or trailing `*`. */
  readonly hosts?: readonly string[];
  readonly notHosts?: readonly string[];
}

/** One `when` condition: `key` is `request.headers[<name>]` (name lowercased) or an L4 attribute. */
export interface PolicyCondition {
  readonly key: string;
  readonly values?: readonly string[];
  readonly notValues?: readonly string[];
}

export interface PolicyRule {
  /** Empty: any source. */
  readonly from: readonly PolicySource[];
  /** Empty: any port. */
  readonly to: readonly PolicyOperation[];
  /** Every condition must hold; absent or empty: none. */
  readonly when?: readonly PolicyCondition[];
}

export interface AuthorizationPolicyObject {
  readonly name: string;
  readonly namespace: string;
  /** spec.selector.matchLabels; empty selects every workload of the namespace (or of the mesh, in ROOT_NAMESPACE). */
  readonly selector: Labels;
  readonly action: PolicyAction;
  /** ALLOW with no rules allows nothing; DENY with no rules denies nothing (as Istio). */
  readonly rules: readonly PolicyRule[];
  readonly dryRun: boolean;
}

/** What a workload accepts besides mTLS from the mesh: PERMISSIVE also takes plaintext, STRICT does not. */
export type MtlsMode = 'STRICT' | 'PERMISSIVE';

/** weft.dev/v1alpha1 PeerAuthentication (model/peer-authentication.ts). */
export interface PeerAuthenticationObject {
  readonly name: string;
  readonly namespace: string;
  /** spec.selector.matchLabels; empty: namespace-wide (mesh-wide in ROOT_NAMESPACE). */
  readonly selector: Labels;
  /** spec.mtls.mode; absent (UNSET) inherits from the scope above. */
  readonly mode?: MtlsMode;
}

/** Every kind the model understands, parsed. */
export interface MeshObjects {
  readonly namespaces: readonly NamespaceObject[];
  readonly pods: readonly PodObject[];
  readonly services: readonly ServiceObject[];
  readonly endpointSlices: readonly EndpointSliceObject[];
  readonly serviceAccounts: readonly ServiceAccountObject[];
  readonly policies: readonly AuthorizationPolicyObject[];
  readonly nodes: readonly NodeObject[];
  /** HTTPRoutes and GRPCRoutes (gateway.networking.k8s.io/v1); absent means none. */
  readonly routes?: readonly RouteObject[];
  /** weft.dev PeerAuthentications; absent means none (every workload PERMISSIVE). */
  readonly peerAuthentications?: readonly PeerAuthenticationObject[];
  /** weft.dev DestinationPolicies, RateLimitPolicies and FaultInjections; absent means none. */
  readonly trafficPolicies?: readonly TrafficPolicyObject[];
}

/** A Kubernetes object before validation, as a source read it. */
export interface RawObject {
  readonly kind: string;
  readonly body: Record<string, unknown>;
  readonly source: SourceRef;
}

// ---- The resolved mesh (what MeshState indexes and what agents receive) ----

export interface Workload {
  /** `namespace/name` */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly node: string | undefined;
  readonly ip: string | undefined;
  /** The pod's IPv6 addresses, when it has any: the agent refuses to capture such a pod (IPv4 only). */
  readonly ipv6?: readonly string[];
  readonly labels: Labels;
  /** The Pod or its Namespace carries weft.dev/mesh=enabled. */
  readonly enrolled: boolean;
  /** The Pod's metadata.uid, when known: the agent finds the pod's cgroup by it. */
  readonly uid?: string | undefined;
  /** SPIFFE id of its service account. */
  readonly identity: string;
  /** The pod's named container ports, when it has any (PodObject.namedPorts). */
  readonly ports?: Readonly<Record<string, number>>;
}

export interface Endpoint {
  readonly ip: string;
  /** The target port on the endpoint. */
  readonly port: number;
  readonly node: string | undefined;
  /** `namespace/name` of the Pod behind the address, when known. */
  readonly workload: string | undefined;
  /** Relative weight for load balancing (1 unless a source says otherwise). */
  readonly weight: number;
}

export interface ServicePortEndpoints {
  /** The Service port (not the target port). */
  readonly port: number;
  readonly endpoints: readonly Endpoint[];
}

/** A node of the resolved mesh: the agent's tunnel (15008) listens on `address`. */
export interface MeshNode {
  readonly name: string;
  readonly address: string;
}

export interface MeshService {
  /** `namespace/name` */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  readonly vip: string;
  readonly ports: readonly ServicePort[];
  /** Where the endpoints came from. */
  readonly endpointSource: 'EndpointSlice' | 'selector' | 'none';
  /** One entry per Service port, in port order. */
  readonly endpoints: readonly ServicePortEndpoints[];
}
