// Inbound capture in eBPF mode needs three things Node and bpftool cannot do:
//   inboundListener: a listening socket created inside a pod's network namespace (the agent
//                    runs in the node's), registered in the pinned SOCKHASH the sk_lookup
//                    program picks from; the agent's proxy worker then accepts on it;
//   attachSkLookup:  the sk_lookup program linked to that network namespace (BPF_LINK_CREATE
//                    with a netns target), the link pinned so it outlives the agent;
//   netnsHolds:      whether an address is local in a namespace (how the agent makes sure it
//                    found the pod's namespace, never the node's or the host's).
// setns() runs on a short-lived thread, so the Node thread never changes namespace.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <node_api.h>

#include "weft_netns.h"

static long bpf_call(int cmd, union bpf_attr *attr) {
  return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int bpf_obj_get(const char *path) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.pathname = (uintptr_t)path;
  return (int)bpf_call(BPF_OBJ_GET, &attr);
}

// ---- work done inside a namespace, on its own thread ----------------------------------

enum netns_job { JOB_PROBE, JOB_LISTEN };

struct netns_task {
  int netns_fd;
  enum netns_job job;
  struct in_addr pod_ip;
  int backlog;
  // results
  int fd;
  int err;
  const char *what;
};

// bind(ip:0) succeeds only where ip is a local address: the pod's namespace.
static int holds_address(struct in_addr ip, int *err) {
  int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    *err = errno;
    return 0;
  }
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr = ip;
  int ok = bind(probe, (struct sockaddr *)&sin, sizeof sin) == 0;
  *err = ok ? 0 : errno;
  close(probe);
  return ok;
}

static void *netns_thread(void *arg) {
  struct netns_task *t = arg;
  t->fd = -1;
  if (setns(t->netns_fd, CLONE_NEWNET) != 0) {
    t->err = errno;
    t->what = "setns";
    return NULL;
  }
  if (!holds_address(t->pod_ip, &t->err)) {
    t->what = "bind to the pod address";
    return NULL;
  }
  if (t->job == JOB_PROBE) return NULL;
  // Bound to loopback with an ephemeral port: nothing outside the pod reaches it directly;
  // the sk_lookup program hands it the pod's inbound connections.
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) {
    t->err = errno;
    t->what = "socket";
    return NULL;
  }
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(s, t->backlog) != 0) {
    t->err = errno;
    t->what = "bind/listen";
    close(s);
    return NULL;
  }
  t->fd = s;
  return NULL;
}

// Runs the task in a thread that enters the namespace; the calling thread stays where it is.
static int run_in_netns(struct netns_task *t) {
  pthread_t th;
  int rc = pthread_create(&th, NULL, netns_thread, t);
  if (rc != 0) {
    t->err = rc;
    t->what = "pthread_create";
    return -1;
  }
  pthread_join(th, NULL);
  return t->err == 0 ? 0 : -1;
}

// ---- N-API plumbing ------------------------------------------------------------------

static const char *errno_code(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
#endif
  return "EUNKNOWN";
}

static void throw_errno(napi_env env, const char *what, int err) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s: %s (%s)", what, errno_code(err), strerror(err));
  napi_throw_error(env, errno_code(err), msg);
}

static int get_string(napi_env env, napi_value v, char *buf, size_t size, const char *name) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok || len == 0 || len >= size - 1) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a non-empty string shorter than %zu bytes", name, size - 1);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return -1;
  }
  return 0;
}

static int get_int(napi_env env, napi_value v, int32_t *out, int32_t min, int32_t max, const char *name) {
  if (napi_get_value_int32(env, v, out) != napi_ok || *out < min || *out > max) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an integer from %d to %d", name, min, max);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return -1;
  }
  return 0;
}

static int get_ip(napi_env env, napi_value v, struct in_addr *out) {
  char text[INET_ADDRSTRLEN + 1];
  if (get_string(env, v, text, sizeof text, "ip") != 0) return -1;
  if (inet_pton(AF_INET, text, out) != 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "ip must be an IPv4 address");
    return -1;
  }
  return 0;
}

static int open_netns(napi_env env, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    char what[640];
    snprintf(what, sizeof what, "open network namespace %s", path);
    throw_errno(env, what, errno);
  }
  return fd;
}

static void throw_task(napi_env env, const struct netns_task *t, const char *netns) {
  char what[640];
  snprintf(what, sizeof what, "in network namespace %s: %s", netns, t->what);
  throw_errno(env, what, t->err);
}

// netnsHolds(netnsPath, ip): boolean — ip is a local address there.
static napi_value netns_holds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char netns[512];
  struct netns_task t;
  memset(&t, 0, sizeof t);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return NULL;
  if (get_string(env, argv[0], netns, sizeof netns, "netnsPath") != 0 || get_ip(env, argv[1], &t.pod_ip) != 0) return NULL;
  t.netns_fd = open_netns(env, netns);
  if (t.netns_fd < 0) return NULL;
  t.job = JOB_PROBE;
  int rc = run_in_netns(&t);
  close(t.netns_fd);
  if (rc != 0 && strcmp(t.what, "bind to the pod address") != 0) {
    throw_task(env, &t, netns);
    return NULL;
  }
  napi_value result;
  napi_get_boolean(env, rc == 0, &result);
  return result;
}

// The SOCKHASH key of bpf/redirect.bpf.c: pod address (network order), slot.
struct weft_inbound_key {
  uint32_t pod_ip;
  uint32_t slot;
};

// inboundListener(netnsPath, podIp, sockhashPin, slot, backlog): fd
static napi_value inbound_listener(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  char netns[512], pin[512];
  int32_t slot, backlog;
  struct netns_task t;
  memset(&t, 0, sizeof t);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "inboundListener(netnsPath, podIp, sockhashPin, slot, backlog)");
    return NULL;
  }
  if (get_string(env, argv[0], netns, sizeof netns, "netnsPath") != 0 || get_ip(env, argv[1], &t.pod_ip) != 0 ||
      get_string(env, argv[2], pin, sizeof pin, "sockhashPin") != 0 || get_int(env, argv[3], &slot, 0, 1023, "slot") != 0 ||
      get_int(env, argv[4], &backlog, 1, 65535, "backlog") != 0)
    return NULL;
  int map = bpf_obj_get(pin);
  if (map < 0) {
    char what[640];
    snprintf(what, sizeof what, "open the pinned map %s", pin);
    throw_errno(env, what, errno);
    return NULL;
  }
  t.netns_fd = open_netns(env, netns);
  if (t.netns_fd < 0) {
    close(map);
    return NULL;
  }
  t.job = JOB_LISTEN;
  t.backlog = backlog;
  int rc = run_in_netns(&t);
  close(t.netns_fd);
  if (rc != 0) {
    close(map);
    throw_task(env, &t, netns);
    return NULL;
  }
  struct weft_inbound_key key = { .pod_ip = t.pod_ip.s_addr, .slot = (uint32_t)slot };
  uint64_t value = (uint64_t)t.fd;
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = (uint32_t)map;
  attr.key = (uintptr_t)&key;
  attr.value = (uintptr_t)&value;
  attr.flags = BPF_ANY;
  if (bpf_call(BPF_MAP_UPDATE_ELEM, &attr) != 0) {
    int err = errno;
    close(t.fd);
    close(map);
    throw_errno(env, "add the listener to the inbound SOCKHASH", err);
    return NULL;
  }
  close(map);
  napi_value result;
  napi_create_int32(env, t.fd, &result);
  return result;
}

// attachSkLookup(progPin, netnsPath, podIp, linkPin): void — refuses a namespace without podIp.
static napi_value attach_sk_lookup(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char prog_pin[512], netns[512], link_pin[512];
  struct netns_task t;
  memset(&t, 0, sizeof t);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "attachSkLookup(progPin, netnsPath, podIp, linkPin)");
    return NULL;
  }
  if (get_string(env, argv[0], prog_pin, sizeof prog_pin, "progPin") != 0 || get_string(env, argv[1], netns, sizeof netns, "netnsPath") != 0 ||
      get_ip(env, argv[2], &t.pod_ip) != 0 || get_string(env, argv[3], link_pin, sizeof link_pin, "linkPin") != 0)
    return NULL;
  t.netns_fd = open_netns(env, netns);
  if (t.netns_fd < 0) return NULL;
  t.job = JOB_PROBE;
  if (run_in_netns(&t) != 0) {
    close(t.netns_fd);
    throw_task(env, &t, netns);
    return NULL;
  }
  int prog = bpf_obj_get(prog_pin);
  if (prog < 0) {
    int err = errno;
    close(t.netns_fd);
    char what[640];
    snprintf(what, sizeof what, "open the pinned program %s", prog_pin);
    throw_errno(env, what, err);
    return NULL;
  }
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.link_create.prog_fd = (uint32_t)prog;
  attr.link_create.target_fd = (uint32_t)t.netns_fd;
  attr.link_create.attach_type = BPF_SK_LOOKUP;
  int link = (int)bpf_call(BPF_LINK_CREATE, &attr);
  int err = errno;
  close(prog);
  close(t.netns_fd);
  if (link < 0) {
    throw_errno(env, "link the sk_lookup program to the pod's network namespace", err);
    return NULL;
  }
  memset(&attr, 0, sizeof attr);
  attr.bpf_fd = (uint32_t)link;
  attr.pathname = (uintptr_t)link_pin;
  if (bpf_call(BPF_OBJ_PIN, &attr) != 0) {
    err = errno;
    close(link); // the only reference: the link goes with it
    char what[640];
    snprintf(what, sizeof what, "pin the sk_lookup link at %s", link_pin);
    throw_errno(env, what, err);
    return NULL;
  }
  close(link);
  return NULL;
}

int weft_register_netns(napi_env env, napi_value exports) {
  const struct { const char *name; napi_callback cb; } fns[] = {
    { "netnsHolds", netns_holds },
    { "inboundListener", inbound_listener },
    { "attachSkLookup", attach_sk_lookup },
  };
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].cb, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, fns[i].name, fn) != napi_ok)
      return -1;
  }
  return 0;
}
