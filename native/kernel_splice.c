// The data-path half of the same-node kernel splice (bpf/splice.bpf.c): open the pinned maps,
// put a pair of connected sockets into the sockhash so the kernel moves their bytes, read how
// many it moved, and read how much a socket has taken into its send queue (so a FIN is passed
// on only after every byte the kernel moved). Loading and pinning stay with bpftool.

#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <linux/tcp.h> // glibc's struct tcp_info predates tcpi_bytes_acked
#include <linux/sockios.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <node_api.h>

#include "kernel_splice.h"

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

// Must match struct weft_splice_pair in bpf/splice.bpf.c.
struct splice_pair {
  uint64_t peer; // 0: the kernel keeps this socket's bytes for the agent
  uint64_t bytes;
};

static long sys_bpf(int cmd, union bpf_attr *attr) {
  return syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

static int map_update(int map_fd, const void *key, const void *value, uint64_t flags) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = (uint32_t)map_fd;
  attr.key = (uint64_t)(uintptr_t)key;
  attr.value = (uint64_t)(uintptr_t)value;
  attr.flags = flags;
  return sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) == 0 ? 0 : -errno;
}

static int map_delete(int map_fd, const void *key) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = (uint32_t)map_fd;
  attr.key = (uint64_t)(uintptr_t)key;
  return sys_bpf(BPF_MAP_DELETE_ELEM, &attr) == 0 ? 0 : -errno;
}

static int map_lookup(int map_fd, const void *key, void *value) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = (uint32_t)map_fd;
  attr.key = (uint64_t)(uintptr_t)key;
  attr.value = (uint64_t)(uintptr_t)value;
  return sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) == 0 ? 0 : -errno;
}

static int socket_cookie(int fd, uint64_t *cookie) {
  socklen_t len = sizeof *cookie;
  return getsockopt(fd, SOL_SOCKET, SO_COOKIE, cookie, &len) == 0 ? 0 : -errno;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  return 0;
}

static int int_arg(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype type;
  return napi_typeof(env, v, &type) == napi_ok && type == napi_number && napi_get_value_int32(env, v, out) == napi_ok && *out >= 0 ? 0 : -1;
}

static int cookie_arg(napi_env env, napi_value v, uint64_t *out) {
  bool lossless;
  return napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok && lossless ? 0 : -1;
}

// bpfObjGet(path: string): number — a file descriptor of a pinned map (close it with closeFd).
static napi_value bpf_obj_get(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  char path[4096];
  size_t len;
  if (get_args(env, info, 1, argv) != 0 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "bpfObjGet(path): path must be a non-empty string");
    return NULL;
  }
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.pathname = (uint64_t)(uintptr_t)path;
  long fd = sys_bpf(BPF_OBJ_GET, &attr);
  if (fd < 0) {
    weft_throw_errno(env, "bpf(BPF_OBJ_GET)", errno);
    return NULL;
  }
  if (napi_create_int32(env, (int32_t)fd, &result) != napi_ok) return NULL;
  return result;
}

// closeFd(fd: number): void
static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv) != 0 || int_arg(env, argv[0], &fd) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closeFd(fd): fd must be a non-negative integer");
    return NULL;
  }
  close(fd);
  return NULL;
}

// kernelSplicePair(socksFd, pairsFd, fdA, fdB): [cookieA, cookieB] (bigints). From now on the
// kernel sends what A receives out of B and the other way. The pair entries go in first: a
// segment that reaches A before B is in the sockhash finds no peer and stays with A (the
// program marks nothing, the agent reads it). Then the sockets, then a nudge so bytes that
// arrived before the sockets were paired are moved too.
static napi_value kernel_splice_pair(napi_env env, napi_callback_info info) {
  napi_value argv[4], result, ca, cb;
  int32_t socks, pairs, fa, fb;
  if (get_args(env, info, 4, argv) != 0 || int_arg(env, argv[0], &socks) != 0 || int_arg(env, argv[1], &pairs) != 0 ||
      int_arg(env, argv[2], &fa) != 0 || int_arg(env, argv[3], &fb) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "kernelSplicePair(socksFd, pairsFd, fdA, fdB): file descriptors");
    return NULL;
  }
  uint64_t a, b;
  int err;
  if ((err = socket_cookie(fa, &a)) != 0 || (err = socket_cookie(fb, &b)) != 0) {
    weft_throw_errno(env, "getsockopt(SO_COOKIE)", -err);
    return NULL;
  }
  struct splice_pair pa = { .peer = b, .bytes = 0 }, pb = { .peer = a, .bytes = 0 };
  uint64_t va = (uint64_t)fa, vb = (uint64_t)fb;
  const char *what = "bpf(BPF_MAP_UPDATE_ELEM) weft_splice_pairs";
  if ((err = map_update(pairs, &a, &pa, BPF_NOEXIST)) != 0) goto fail;
  if ((err = map_update(pairs, &b, &pb, BPF_NOEXIST)) != 0) goto fail_a;
  what = "bpf(BPF_MAP_UPDATE_ELEM) weft_splice_socks";
  if ((err = map_update(socks, &a, &va, BPF_NOEXIST)) != 0) goto fail_b;
  if ((err = map_update(socks, &b, &vb, BPF_NOEXIST)) != 0) goto fail_sa;
  // Setting SO_RCVLOWAT re-runs the socket's data-ready check: bytes queued before the
  // sockets entered the sockhash go through the verdict program now, in order.
  int one = 1;
  setsockopt(fa, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  setsockopt(fb, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  if (napi_create_array_with_length(env, 2, &result) != napi_ok || napi_create_bigint_uint64(env, a, &ca) != napi_ok ||
      napi_create_bigint_uint64(env, b, &cb) != napi_ok || napi_set_element(env, result, 0, ca) != napi_ok || napi_set_element(env, result, 1, cb) != napi_ok)
    return NULL;
  return result;
fail_sa:
  map_delete(socks, &a);
fail_b:
  map_delete(pairs, &b);
fail_a:
  map_delete(pairs, &a);
fail:
  weft_throw_errno(env, what, -err);
  return NULL;
}

// The (pairsFd, cookie) arguments of a pair query, and the pair's entry: 1 found, 0 gone, -1 when
// the arguments are wrong (a TypeError naming `usage` is pending then).
static int pair_entry(napi_env env, napi_callback_info info, const char *usage, struct splice_pair *p) {
  napi_value argv[2];
  int32_t pairs;
  uint64_t cookie;
  if (get_args(env, info, 2, argv) != 0 || int_arg(env, argv[0], &pairs) != 0 || cookie_arg(env, argv[1], &cookie) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
    return -1;
  }
  return map_lookup(pairs, &cookie, p) == 0 ? 1 : 0;
}

// kernelSpliceBytes(pairsFd, cookie): number — bytes the kernel moved from that socket to its
// peer so far; -1 when the pair is gone.
static napi_value kernel_splice_bytes(napi_env env, napi_callback_info info) {
  napi_value result;
  struct splice_pair p;
  int found = pair_entry(env, info, "kernelSpliceBytes(pairsFd, cookie): a descriptor and a bigint cookie", &p);
  if (found < 0 || napi_create_double(env, found ? (double)p.bytes : -1, &result) != napi_ok) return NULL;
  return result;
}

// kernelSplicePassing(pairsFd, cookie): boolean — the kernel kept a segment of that socket for
// the agent (its peer was not in the sockhash when it came) and keeps the rest that way too
// (bpf/splice.bpf.c): JavaScript must move that direction. False when the pair is gone.
static napi_value kernel_splice_passing(napi_env env, napi_callback_info info) {
  napi_value result;
  struct splice_pair p;
  int found = pair_entry(env, info, "kernelSplicePassing(pairsFd, cookie): a descriptor and a bigint cookie", &p);
  if (found < 0 || napi_get_boolean(env, found == 1 && p.peer == 0, &result) != napi_ok) return NULL;
  return result;
}

// kernelSpliceForget(pairsFd, cookie): void — removes a pair entry (the sockhash drops a
// socket by itself when it closes).
static napi_value kernel_splice_forget(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t pairs;
  uint64_t cookie;
  if (get_args(env, info, 2, argv) != 0 || int_arg(env, argv[0], &pairs) != 0 || cookie_arg(env, argv[1], &cookie) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "kernelSpliceForget(pairsFd, cookie): a descriptor and a bigint cookie");
    return NULL;
  }
  map_delete(pairs, &cookie);
  return NULL;
}

// drainInto(fromFd, toFd): [moved, complete] — moves what `from`'s receive queue holds into
// `to`'s send queue: peek, send what `to` takes, consume exactly that (MSG_TRUNC discards
// without a copy), so nothing is read that cannot be passed on. Why: once JavaScript has read
// from a socket, the segment at the head of its queue may be partly consumed, and the kernel
// splice would forward that segment whole (tcp_read_skb ignores the consumed offset),
// repeating the bytes already read. An emptied queue has no such segment. complete: the queue
// is empty (or holds only the FIN); false when `to` is full or DRAIN_LIMIT was reached, and
// then some bytes may still wait: drain again before pairing.
#define DRAIN_CHUNK (256 * 1024)
#define DRAIN_LIMIT (4 * 1024 * 1024)
static _Thread_local char drain_buf[DRAIN_CHUNK]; // one per thread: proxy workers are threads of one process
static napi_value drain_into(napi_env env, napi_callback_info info) {
  napi_value argv[2], result, moved_v, complete_v;
  int32_t from, to;
  if (get_args(env, info, 2, argv) != 0 || int_arg(env, argv[0], &from) != 0 || int_arg(env, argv[1], &to) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "drainInto(fromFd, toFd): file descriptors");
    return NULL;
  }
  double moved = 0;
  bool complete = false;
  while (moved < DRAIN_LIMIT) {
    ssize_t n = recv(from, drain_buf, sizeof drain_buf, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      complete = true;
      break;
    }
    if (n < 0) {
      weft_throw_errno(env, "recv(MSG_PEEK) on the socket being drained", errno);
      return NULL;
    }
    if (n == 0) { // EOF: only the FIN is left, which the owner of the socket reads itself
      complete = true;
      break;
    }
    ssize_t sent = send(to, drain_buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (sent < 0) {
      weft_throw_errno(env, "send() to the socket being drained into", errno);
      return NULL;
    }
    ssize_t eaten;
    do eaten = recv(from, drain_buf, (size_t)sent, MSG_TRUNC | MSG_DONTWAIT);
    while (eaten < 0 && errno == EINTR);
    if (eaten != sent) { // cannot happen: the bytes were peeked and this thread is the only reader of the socket
      weft_throw_errno(env, "recv(MSG_TRUNC) consumed less than was peeked", eaten < 0 ? errno : EIO);
      return NULL;
    }
    moved += (double)sent;
    if (sent < n) break; // `to` is full
  }
  if (napi_create_array_with_length(env, 2, &result) != napi_ok || napi_create_double(env, moved, &moved_v) != napi_ok ||
      napi_get_boolean(env, complete, &complete_v) != napi_ok || napi_set_element(env, result, 0, moved_v) != napi_ok ||
      napi_set_element(env, result, 1, complete_v) != napi_ok)
    return NULL;
  return result;
}

// tcpQueuedTotal(fd): number — every byte this socket has taken into its send queue since it
// connected (acknowledged + still queued); compare two readings, not absolute values (the
// kernel counts the SYN and FIN among acknowledged bytes).
static napi_value tcp_queued_total(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int32_t fd;
  if (get_args(env, info, 1, argv) != 0 || int_arg(env, argv[0], &fd) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "tcpQueuedTotal(fd): fd must be a non-negative integer");
    return NULL;
  }
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  int outq = 0;
  memset(&ti, 0, sizeof ti);
  // Acknowledged first, then the queue: an ACK in between can only make the sum smaller.
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 || ioctl(fd, SIOCOUTQ, &outq) != 0) {
    weft_throw_errno(env, "getsockopt(TCP_INFO)/ioctl(SIOCOUTQ)", errno);
    return NULL;
  }
  if (napi_create_double(env, (double)ti.tcpi_bytes_acked + (double)outq, &result) != napi_ok) return NULL;
  return result;
}

int weft_kernel_splice_init(napi_env env, napi_value exports) {
  return weft_export_fn(env, exports, "bpfObjGet", bpf_obj_get) != 0 || weft_export_fn(env, exports, "closeFd", close_fd) != 0 ||
         weft_export_fn(env, exports, "kernelSplicePair", kernel_splice_pair) != 0 ||
         weft_export_fn(env, exports, "kernelSpliceBytes", kernel_splice_bytes) != 0 ||
         weft_export_fn(env, exports, "kernelSpliceForget", kernel_splice_forget) != 0 ||
         weft_export_fn(env, exports, "kernelSplicePassing", kernel_splice_passing) != 0 ||
         weft_export_fn(env, exports, "tcpQueuedTotal", tcp_queued_total) != 0 ||
         weft_export_fn(env, exports, "drainInto", drain_into) != 0 ? -1 : 0;
}
