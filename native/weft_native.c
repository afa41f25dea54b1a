// The one socket option Node cannot read: getsockopt(SOL_IP, SO_ORIGINAL_DST); and, in
// weft_netns.c, what eBPF inbound capture needs from inside pods' network namespaces.
// In iptables mode conntrack answers it; in eBPF mode the cgroup/getsockopt program
// does (bpf/redirect.bpf.c), so the proxy has a single code path.
// Plain N-API (ABI-stable): built against any Node's headers, loaded by Node 24.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <node_api.h>

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
static void throw_errno(napi_env env, const char *what, int err) {
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
    throw_errno(env, "getsockopt(SOL_IP, SO_ORIGINAL_DST)", errno);
    return NULL;
  }
  if (len < sizeof sin || sin.sin_family != AF_INET) {
    throw_errno(env, "getsockopt(SOL_IP, SO_ORIGINAL_DST) returned no IPv4 address", EAFNOSUPPORT);
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

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "originalDst", fn) != napi_ok || weft_register_netns(env, exports) != 0)
    return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
