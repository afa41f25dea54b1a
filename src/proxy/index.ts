// The shared node proxy: outbound capture listener, inbound tunnel and plaintext listeners
// (one Listener contract, one connection skeleton, one registry of open connections), the
// upstream connector, the pooled mTLS HTTP/2 tunnel, byte splicing, load balancing and
// outlier detection.

export { ProxyErrors, TunnelHandshakeError, TunnelRefusedError, proxyError, type ProxyErrorCode } from './errors.ts';
export {
  NO_TELEMETRY,
  type Authorizer, type ByteSource, type ConnectionDescription, type ConnectionRateGate, type ConnectionObserver, type ConnectionRecord, type MeshView,
  type OriginalDestinationReader, type PeerRef, type ServiceRef, type SocketAddress, type TunnelCredentials,
} from './contracts.ts';
export { ResponseFlags, type ResponseFlag } from './flags.ts';
export { HandshakeReasons, type HandshakeReason } from './handshake-reasons.ts';
export { identityForServerName, serverNameFor } from './server-name.ts';
export { endpointKey, pickEndpoint, type LoadSnapshot, type Pickable, type RandomSource } from './load-balancer.ts';
export { OutlierDetector, type OutlierOptions } from './outlier-detector.ts';
export { UpstreamHealth } from './upstream-health.ts';
export {
  DEFAULT_HALF_CLOSED_IDLE_MS, splice, resetSide, type SocketCloser, type SpliceOptions, type SpliceOutcome, type SpliceResult, type SpliceSide,
} from './splice.ts';
export { connectTcp, type TcpConnectOptions } from './tcp-connect.ts';
export { handOverToKernel, kernelByteSource, tryKernelPair, type AdoptedKernelPair, type KernelDrain, type KernelFallback, type KernelHandover, type KernelPair, type KernelPairOwner, type KernelSplicer, type PairSide } from './kernel-splice.ts';
export { DEFAULT_TUNNEL_TUNING, tunnelTuning, type TunnelTuning } from './tunnel-tuning.ts';
export { TunnelPool, type TunnelPoolDeps, type TunnelPoolOptions, type TunnelPoolStats, type TunnelRequest } from './tunnel-pool.ts';
export { InboundTunnel, type InboundTunnelDeps, type InboundTunnelOptions } from './inbound-tunnel.ts';
export { InboundPlain, type InboundPlainDeps, type InboundPlainOptions } from './inbound-plain.ts';
export { admitInbound, parseAuthority, parseForwardedFor, type Admission, type InboundRequest } from './inbound-admission.ts';
export {
  OutboundListener,
  type ConnectionProtocol, type EndpointHealth, type HttpHandler, type OutboundDeps, type OutboundOptions, type ProtocolSelector,
  type RoutedConnection,
} from './outbound.ts';
export { ListenerCore, type Accepted, type Ending, type HandedOver, type Listener, type ListenerCommonDeps, type ServeOptions } from './listener.ts';
export {
  ConnectionRegistry, type ConnectionEnding, type ConnectionGate, type ListenerKind, type LiveConnection,
} from './connection-registry.ts';
export { UpstreamConnector, type ReachableHop, type TunnelOpener, type UpstreamOptions, type UpstreamRequest, type UpstreamStream } from './upstream.ts';
export { classifyConnectFailure, type ConnectFailure, type ConnectFailureContext } from './connect-failure.ts';
export { planHop, resolveDestination, type Destination, type Hop, type OutboundTarget } from './outbound-route.ts';
export { workloadName } from './describe.ts';
export { ConnectionCaps, FD_COST, capDecision, type CapHit, type CapObserver, type ConnectionCapsOptions } from './connection-caps.ts';
export { DEFAULT_HANDSHAKE_LIMITS, HandshakeLimiter, handshakeDecision, type HandshakeLimits } from './handshake-limiter.ts';
export { NO_OVERLOAD_OBSERVER, type OverloadObserver } from './contracts.ts';
