// What Node cannot do by itself, kept small:
// - getsockopt(SOL_IP, SO_ORIGINAL_DST). In iptables mode conntrack answers it; in eBPF mode
//   the cgroup/getsockopt program does (bpf/redirect.bpf.c), so the proxy has one code path.
// - setsockopt(SO_LINGER): a proxied socket lingers 0 while bytes are in flight, so a dying
//   agent's sockets are reset (RST), not closed cleanly (FIN); the graceful path clears it.
// - getrlimit/setrlimit(RLIMIT_NOFILE): the agent raises its soft limit to the hard one.
// - malloc_trim(0): hands freed heap back to the kernel after a flood.
// - in weft_netns.c, what eBPF inbound capture needs from inside pods' network namespaces.
// - the same-node kernel splice's sockhash and pair maps (kernel_splice.c), and the epoll
//   watch that holds spliced sockets once JavaScript has let go of them (kernel_watch.c).
// Plain N-API (ABI-stable): built against any Node's headers, loaded by Node 24.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <node_api.h>

#include "kernel_splice.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "weft_netns.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80 // linux/netfilter_ipv4.h
#endif

static const char *errno_name(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
#endif
  switch (err) {
    case ENOENT: return "ENOENT";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EFAULT: return "EFAULT";
    default: return "EUNKNOWN";
  }
}

// Throws an Error whose `code` is the errno name, e.g. ENOENT.
void weft_throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s (%s)", what, errno_name(err), strerror(err));
  napi_throw_error(env, errno_name(err), msg);
}

// originalDst(fd: number): { address: string, port: number }
static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type;
  int32_t fd;

  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "originalDst(fd): fd must be a non-negative integer");
    return NULL;
  }

  struct sockaddr_in sin;
  socklen_t len = sizeof sin;
  memset(&sin, 0, sizeof sin);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sin, &len) != 0) {
    weft_throw_errno(env, "getsockopt(SOL_IP, SO_ORIGINAL_DST)", errno);
    return NULL;
  }
  if (len < sizeof sin || sin.sin_family != AF_INET) {
    weft_throw_errno(env, "getsockopt(SOL_IP, SO_ORIGINAL_DST) returned no IPv4 address", EAFNOSUPPORT);
    return NULL;
  }

  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text);
  napi_value result, address, port;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address) != napi_ok ||
      napi_create_uint32(env, ntohs(sin.sin_port), &port) != napi_ok ||
      napi_set_named_property(env, result, "address", address) != napi_ok ||
      napi_set_named_property(env, result, "port", port) != napi_ok)
    return NULL;
  return result;
}

static int int_args(napi_env env, napi_callback_info info, size_t want, int32_t *out) {
  size_t argc = want;
  napi_value argv[4];
  napi_valuetype type;
  if (want > 4 || napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  for (size_t i = 0; i < want; i++) {
    if (napi_typeof(env, argv[i], &type) != napi_ok || type != napi_number || napi_get_value_int32(env, argv[i], &out[i]) != napi_ok) return -1;
  }
  return 0;
}

// setLinger(fd: number, seconds: number): seconds >= 0 turns lingering on for that long
// (0: close() resets the connection), -1 turns it off (close() sends FIN as usual).
static napi_value set_linger(napi_env env, napi_callback_info info) {
  int32_t a[2];
  if (int_args(env, info, 2, a) != 0 || a[0] < 0 || a[1] < -1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "setLinger(fd, seconds): fd >= 0, seconds >= -1");
    return NULL;
  }
  struct linger l = { .l_onoff = a[1] >= 0, .l_linger = a[1] >= 0 ? a[1] : 0 };
  if (setsockopt(a[0], SOL_SOCKET, SO_LINGER, &l, sizeof l) != 0) {
    weft_throw_errno(env, "setsockopt(SOL_SOCKET, SO_LINGER)", errno);
    return NULL;
  }
  return NULL;
}

static napi_value limit_object(napi_env env, const struct rlimit *rl) {
  napi_value result, soft, hard;
  // RLIM_INFINITY does not fit a double exactly; report it as -1.
  double s = rl->rlim_cur == RLIM_INFINITY ? -1 : (double)rl->rlim_cur;
  double h = rl->rlim_max == RLIM_INFINITY ? -1 : (double)rl->rlim_max;
  if (napi_create_object(env, &result) != napi_ok || napi_create_double(env, s, &soft) != napi_ok ||
      napi_create_double(env, h, &hard) != napi_ok || napi_set_named_property(env, result, "soft", soft) != napi_ok ||
      napi_set_named_property(env, result, "hard", hard) != napi_ok)
    return NULL;
  return result;
}

// nofileLimit(): { soft, hard } of RLIMIT_NOFILE.
static napi_value nofile_limit(napi_env env, napi_callback_info info) {
  (void)info;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    weft_throw_errno(env, "getrlimit(RLIMIT_NOFILE)", errno);
    return NULL;
  }
  return limit_object(env, &rl);
}

// raiseNofileLimit(): sets the soft RLIMIT_NOFILE to the hard one; returns { soft, hard } after.
static napi_value raise_nofile_limit(napi_env env, napi_callback_info info) {
  (void)info;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    weft_throw_errno(env, "getrlimit(RLIMIT_NOFILE)", errno);
    return NULL;
  }
  if (rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      weft_throw_errno(env, "setrlimit(RLIMIT_NOFILE)", errno);
      return NULL;
    }
  }
  return limit_object(env, &rl);
}

// mallocTrim(): malloc_trim(0) where glibc has it; true when memory went back to the kernel.
static napi_value malloc_trim_(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
#if defined(__GLIBC__)
  int released = malloc_trim(0);
#else
  int released = 0;
#endif
  if (napi_get_boolean(env, released != 0, &result) != napi_ok) return NULL;
  return result;
}

int weft_export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) == napi_ok &&
         napi_set_named_property(env, exports, name, fn) == napi_ok ? 0 : -1;
}

static napi_value init(napi_env env, napi_value exports) {
  if (weft_export_fn(env, exports, "originalDst", original_dst) != 0 || weft_export_fn(env, exports, "setLinger", set_linger) != 0 ||
      weft_export_fn(env, exports, "nofileLimit", nofile_limit) != 0 || weft_export_fn(env, exports, "raiseNofileLimit", raise_nofile_limit) != 0 ||
      weft_export_fn(env, exports, "mallocTrim", malloc_trim_) != 0 || weft_register_netns(env, exports) != 0 ||
      weft_kernel_splice_init(env, exports) != 0 || weft_kernel_watch_init(env, exports) != 0)
    return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
