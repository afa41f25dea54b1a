// SPDX-License-Identifier: GPL-2.0
// weft transparent capture (IPv4 TCP, also when dialled from a dual-stack IPv6 socket).
//
//   connect4 (pod cgroups)    : remember the original destination under the socket
//                               cookie, send the connection to the agent instead.
//   connect6 (pod cgroups)    : the same for an IPv4 destination spelled as a v4-mapped
//                               IPv6 address (::ffff:a.b.c.d), which is what gRPC's C core,
//                               Java and many runtimes dial by default. Native IPv6 is not
//                               captured: pods with IPv6 addresses are refused at enrolment.
//   sockops (pod cgroups)     : once established, also key that record by the 4-tuple,
//                               which the agent's accepted socket can see too; on close,
//                               drop both records.
//   getpeername4/6 (pod cgroups): the client still sees the address it dialled, as it
//                               does under an iptables REDIRECT (NAT is invisible to it).
//   getsockopt (agent cgroup) : answer getsockopt(SOL_IP, SO_ORIGINAL_DST) from the
//                               4-tuple map, so the proxy reads it like an iptables
//                               REDIRECT and has one code path for both modes; for an
//                               inbound connection (below) the answer is its own local
//                               address, which is where it was going.
//   sk_lookup (pod netns)     : inbound capture. Linked to each enrolled pod's network
//                               namespace, it hands every new TCP connection to the pod's
//                               address (from another node, a pod on the same bridge, a pod
//                               outside the mesh) to a listening socket the agent opened in
//                               that namespace (weft_inbound_socks), instead of the pod's own
//                               listener. Exempt: connections from the node's own addresses
//                               (kubelet probes, the agent's own connections to the pod) and
//                               ports in weft_inbound_skip_ports. Established connections and
//                               replies never reach it: the kernel looks listeners up only for
//                               new connections.
//
// Maps are filled by the agent (src/redirect/ebpf-maps.ts holds the byte layouts;
// keep the two in step). Every address and port in a key or value is in network
// byte order, so userspace writes the bytes as they appear on the wire.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_IP 0
#define SO_ORIGINAL_DST 80

// Sizes of the connection maps. Records are deleted when the connection closes; LRU
// is the backstop for closes never seen (failed connects, programs detached meanwhile).
#define CONN_ENTRIES 262144
// Proxy workers (and so inbound sockets per pod) at most; the agent caps --workers at 64.
#define MAX_SLOTS 64

// Written once by the agent; all zero (not yet configured) means "capture nothing".
struct weft_settings {
	__u32 agent_ip;     // where captured connections go (the pod's gateway)
	__u16 agent_port;   // the outbound capture port, 15001
	__u16 inbound_slots; // how many inbound sockets each pod has (one per proxy worker); 0: no inbound capture
	__u32 build_id;     // which object file these pins came from (see the loader)
	__u32 reserved2;
};

struct weft_orig_dst {
	__u32 ip;
	__u16 port;
	__u16 reserved;
};

// As the client (pod) sees the connection; the agent's accepted socket sees the
// same four values with local and remote swapped.
struct weft_conn_key {
	__u32 client_ip;
	__u32 server_ip;
	__u16 client_port;
	__u16 server_port;
};

// The uapi struct sockaddr_in, spelled out: vmlinux.h names its padding
// differently across kernel versions.
struct weft_sockaddr_in {
	__u16 family;
	__u16 port;
	__u32 addr;
	__u8 zero[8];
};

struct weft_cidr_key {
	__u32 prefixlen;
	__u32 ip;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weft_settings);
} weft_settings SEC(".maps");

// Destination ports never captured (the agent's own ports, DNS, the user's list).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} weft_skip_ports SEC(".maps");

// Destination networks never captured (loopback, the agent's address, the user's list).
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct weft_cidr_key);
	__type(value, __u8);
} weft_skip_cidrs SEC(".maps");

// Enrolled pods, pod IPv4 -> who it is. Not read by the programs (being attached to
// the pod's cgroup is what enrols it): this is the agent's own record, pinned so a
// restarted agent knows which cgroups it attached to and for which pod.
#define POD_ID_LEN 128
#define CGROUP_PATH_LEN 384
struct weft_pod {
	char pod_id[POD_ID_LEN];
	char cgroup_path[CGROUP_PATH_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct weft_pod);
} weft_pods SEC(".maps");

// Sources never captured inbound: the node's own addresses.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} weft_inbound_exempt SEC(".maps");

// Pod ports never captured inbound (network order, as weft_skip_ports).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} weft_inbound_skip_ports SEC(".maps");

// The agent's listening sockets inside enrolled pods' network namespaces, one per proxy
// worker (slot). A socket leaves the map by itself when the agent closes it.
struct weft_inbound_key {
	__u32 pod_ip;
	__u32 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 32768);
	__type(key, struct weft_inbound_key);
	__type(value, __u64);
} weft_inbound_socks SEC(".maps");

// Socket cookie -> original destination, for the life of the client socket.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONN_ENTRIES);
	__type(key, __u64);
	__type(value, struct weft_orig_dst);
} weft_by_cookie SEC(".maps");

// 4-tuple -> original destination, read when the agent asks.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONN_ENTRIES);
	__type(key, struct weft_conn_key);
	__type(value, struct weft_orig_dst);
} weft_conns SEC(".maps");

static __always_inline int skipped(__u32 ip, __u16 port)
{
	struct weft_cidr_key cidr = { .prefixlen = 32, .ip = ip };

	if (bpf_map_lookup_elem(&weft_skip_ports, &port))
		return 1;
	return bpf_map_lookup_elem(&weft_skip_cidrs, &cidr) != NULL;
}

// Decides whether a TCP connect to (ip, port) is captured; if so, records that original
// destination under the socket cookie and returns 1 with *cfg_out saying where to send it.
static __always_inline int should_capture(struct bpf_sock_addr *ctx, __u32 ip, __u16 port, struct weft_settings **cfg_out)
{
	__u32 zero = 0;
	struct weft_settings *cfg;
	struct weft_orig_dst orig;
	__u64 cookie;

	if (ctx->type != SOCK_STREAM || (ctx->protocol != IPPROTO_TCP && ctx->protocol != 0))
		return 0;
	cfg = bpf_map_lookup_elem(&weft_settings, &zero);
	if (!cfg || cfg->agent_ip == 0 || cfg->agent_port == 0)
		return 0;
	if (skipped(ip, port))
		return 0;

	orig.ip = ip;
	orig.port = port;
	orig.reserved = 0;
	cookie = bpf_get_socket_cookie(ctx);
	// Without a record the agent could not route the connection; leave it alone.
	if (bpf_map_update_elem(&weft_by_cookie, &cookie, &orig, BPF_ANY) != 0)
		return 0;
	*cfg_out = cfg;
	return 1;
}

SEC("cgroup/connect4")
int weft_connect4(struct bpf_sock_addr *ctx)
{
	struct weft_settings *cfg = NULL;

	if (!should_capture(ctx, ctx->user_ip4, (__u16)ctx->user_port, &cfg) || !cfg)
		return 1;
	ctx->user_ip4 = cfg->agent_ip;
	ctx->user_port = cfg->agent_port;
	return 1;
}

// ::ffff:a.b.c.d — the first 80 bits zero, the next 16 one.
static __always_inline int v4_mapped(__u32 w0, __u32 w1, __u32 w2)
{
	return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffff);
}

SEC("cgroup/connect6")
int weft_connect6(struct bpf_sock_addr *ctx)
{
	struct weft_settings *cfg = NULL;

	if (!v4_mapped(ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2]))
		return 1;
	if (!should_capture(ctx, ctx->user_ip6[3], (__u16)ctx->user_port, &cfg) || !cfg)
		return 1;
	// Still v4-mapped: the kernel connects over IPv4, exactly as connect4 would.
	ctx->user_ip6[3] = cfg->agent_ip;
	ctx->user_port = cfg->agent_port;
	return 1;
}

// Fills the key of an IPv4 connection, also one on a dual-stack socket to a v4-mapped
// address (the kernel keeps its IPv4 addresses in the same fields then); 0 for anything else.
static __always_inline int conn_key(struct bpf_sock_ops *skops, struct weft_conn_key *key)
{
	__u32 family = skops->family;

	if (family != AF_INET && !(family == AF_INET6 && v4_mapped(skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2])))
		return 0;
	key->client_ip = skops->local_ip4;
	key->server_ip = skops->remote_ip4;
	// local_port is in host order. remote_port is "network order" in a 32-bit
	// field: the port's two bytes are the field's first two bytes in memory, so
	// ntohl yields the host-order port on either endianness.
	key->client_port = bpf_htons((__u16)skops->local_port);
	key->server_port = bpf_htons((__u16)bpf_ntohl(skops->remote_port));
	return 1;
}

SEC("sockops")
int weft_sockops(struct bpf_sock_ops *skops)
{
	struct weft_orig_dst *orig;
	struct weft_conn_key key;
	__u64 cookie;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		cookie = bpf_get_socket_cookie(skops);
		orig = bpf_map_lookup_elem(&weft_by_cookie, &cookie);
		if (!orig || !conn_key(skops, &key))
			return 1;
		bpf_map_update_elem(&weft_conns, &key, orig, BPF_ANY);
		// Only captured sockets pay for state callbacks, to clean up on close.
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != BPF_TCP_CLOSE)
			return 1;
		cookie = bpf_get_socket_cookie(skops);
		bpf_map_delete_elem(&weft_by_cookie, &cookie);
		if (conn_key(skops, &key))
			bpf_map_delete_elem(&weft_conns, &key);
		return 1;
	}
	return 1;
}

SEC("cgroup/getpeername4")
int weft_getpeername4(struct bpf_sock_addr *ctx)
{
	struct weft_orig_dst *orig;
	__u64 cookie = bpf_get_socket_cookie(ctx);

	orig = bpf_map_lookup_elem(&weft_by_cookie, &cookie);
	if (!orig)
		return 1;
	ctx->user_ip4 = orig->ip;
	ctx->user_port = orig->port;
	return 1;
}

// Only sockets connect6 captured have a record, so the answer is always v4-mapped.
SEC("cgroup/getpeername6")
int weft_getpeername6(struct bpf_sock_addr *ctx)
{
	struct weft_orig_dst *orig;
	__u64 cookie = bpf_get_socket_cookie(ctx);

	orig = bpf_map_lookup_elem(&weft_by_cookie, &cookie);
	if (!orig)
		return 1;
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
	ctx->user_ip6[3] = orig->ip;
	ctx->user_port = orig->port;
	return 1;
}

SEC("cgroup/getsockopt")
int weft_getsockopt(struct bpf_sockopt *ctx)
{
	struct weft_sockaddr_in *sin;
	struct weft_orig_dst *orig;
	struct weft_orig_dst inbound;
	struct weft_conn_key key;
	struct bpf_sock *sk;

	if (ctx->level != SOL_IP || ctx->optname != SO_ORIGINAL_DST)
		return 1;
	sk = ctx->sk;
	if (!sk)
		return 1;
	// An agent listening on a dual-stack socket sees IPv4 clients as ::ffff:a.b.c.d; the
	// IPv4 fields hold the addresses then too.
	if (sk->family != AF_INET && !(sk->family == AF_INET6 && v4_mapped(sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2])))
		return 1;
	key.client_ip = sk->dst_ip4;
	key.server_ip = sk->src_ip4;
	key.client_port = sk->dst_port;
	key.server_port = bpf_htons((__u16)sk->src_port);
	orig = bpf_map_lookup_elem(&weft_conns, &key);
	if (!orig) {
		// Accepted on an inbound socket in a pod's namespace: nothing was rewritten, so the
		// connection's own local address (an enrolled pod's) is where it was going. The
		// agent's other sockets never have a pod address on their side.
		if (!bpf_map_lookup_elem(&weft_pods, &key.server_ip))
			return 1; // not ours: keep whatever the kernel (conntrack) answered
		inbound.ip = key.server_ip;
		inbound.port = key.server_port;
		inbound.reserved = 0;
		orig = &inbound;
	}

	sin = ctx->optval;
	if ((void *)(sin + 1) > ctx->optval_end)
		return 1;
	sin->family = AF_INET;
	sin->port = orig->port;
	sin->addr = orig->ip;
	__builtin_memset(sin->zero, 0, sizeof(sin->zero));
	ctx->optlen = sizeof(*sin);
	ctx->retval = 0;
	return 1;
}

SEC("sk_lookup")
int weft_inbound(struct bpf_sk_lookup *ctx)
{
	struct weft_inbound_key key;
	struct weft_settings *cfg;
	struct bpf_sock *sk;
	__u32 zero = 0;
	__u32 slots, start, i, local_ip, remote_ip;
	__u16 port;

	if (ctx->family != AF_INET || ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	local_ip = ctx->local_ip4;
	remote_ip = ctx->remote_ip4;
	// Only connections to the pod's own address (not to loopback or another local address).
	if (!bpf_map_lookup_elem(&weft_pods, &local_ip))
		return SK_PASS;
	if (bpf_map_lookup_elem(&weft_inbound_exempt, &remote_ip))
		return SK_PASS;
	port = bpf_htons((__u16)ctx->local_port);
	if (bpf_map_lookup_elem(&weft_inbound_skip_ports, &port))
		return SK_PASS;
	cfg = bpf_map_lookup_elem(&weft_settings, &zero);
	if (!cfg || cfg->inbound_slots == 0)
		return SK_PASS;
	slots = cfg->inbound_slots;
	if (slots > MAX_SLOTS)
		slots = MAX_SLOTS;
	// Spread connections over the workers; a worker whose socket is gone is skipped.
	start = bpf_ntohs(ctx->remote_port) % slots;
	key.pod_ip = local_ip;
	for (i = 0; i < MAX_SLOTS; i++) {
		if (i >= slots)
			break;
		key.slot = (start + i) % slots;
		sk = bpf_map_lookup_elem(&weft_inbound_socks, &key);
		if (!sk)
			continue;
		if (bpf_sk_assign(ctx, sk, 0) == 0) {
			bpf_sk_release(sk);
			return SK_PASS;
		}
		bpf_sk_release(sk);
	}
	// Captured pod, no agent socket (the agent died, or has not opened them yet): refuse
	// rather than let the connection bypass the mesh. A stopping agent that hands the pod
	// back unlinks this program first.
	return SK_DROP;
}

char LICENSE[] SEC("license") = "GPL";
