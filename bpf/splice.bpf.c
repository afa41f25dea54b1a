// SPDX-License-Identifier: GPL-2.0
// weft same-node kernel splice: bytes of an authorized, opaque TCP connection between two
// pods of one node move from the agent's client-facing socket to its server-facing one
// (and back) inside the kernel, without a trip through the proxy's JavaScript.
//
//   sk_skb (verdict, on weft_splice_socks): every segment a paired socket receives is sent
//                 out of its peer (bpf_sk_redirect_hash, egress), and its length added to
//                 the pair's byte count, which the agent reads for the connection record.
//                 A socket with no pair entry, or whose peer is not in the sockhash (gone,
//                 or not in it yet: the agent puts the two sockets in one after the other),
//                 keeps its bytes (SK_PASS): the agent reads them itself, nothing is dropped.
//                 Once one segment is kept so, the pair's peer is cleared and every later
//                 segment that way is kept too: redirecting them would send them ahead of
//                 the kept one. The agent sees the cleared peer and moves that direction
//                 itself, in order.
//
// The agent fills both maps (src/redirect/kernel-splice.ts holds the byte layouts; keep the
// two in step): a socket enters weft_splice_socks under its socket cookie, and
// weft_splice_pairs says, per cookie, which cookie its bytes go to.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

// Two entries per spliced connection. A full map refuses the update: that connection
// is spliced in user space instead (the agent counts why).
#define SPLICE_ENTRIES 131072

struct weft_splice_pair {
	__u64 peer;   // socket cookie of the socket this one's bytes go out of; 0: kept for the agent
	__u64 bytes;  // payload bytes moved so far, this socket -> peer
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SPLICE_ENTRIES);
	__type(key, __u64);
	__type(value, __u64);
} weft_splice_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SPLICE_ENTRIES);
	__type(key, __u64);
	__type(value, struct weft_splice_pair);
} weft_splice_pairs SEC(".maps");

SEC("sk_skb")
int weft_splice_verdict(struct __sk_buff *skb)
{
	struct weft_splice_pair *pair;
	__u64 cookie = bpf_get_socket_cookie(skb);
	__u32 len = skb->len;

	// A bare FIN reaches the verdict as an empty skb. Redirected, it would be "sent" on the
	// peer after the agent has shut that side down (EPIPE, reported on the peer). The FIN
	// itself is seen by the agent through the socket's shutdown state, not through this skb.
	if (len == 0)
		return SK_DROP;
	pair = bpf_map_lookup_elem(&weft_splice_pairs, &cookie);
	if (!pair || pair->peer == 0)
		return SK_PASS;
	if (bpf_sk_redirect_hash(skb, &weft_splice_socks, &pair->peer, 0) != SK_PASS) {
		// Peer gone (the agent sees the close) or not paired yet: from now on the agent
		// moves this direction. Verdicts of one socket run one at a time (its lock).
		pair->peer = 0;
		return SK_PASS;
	}
	__sync_fetch_and_add(&pair->bytes, len);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
