// Holds the two sockets of a kernel-spliced connection (kernel_splice.c) outside libuv once
// their bytes are the kernel's: the agent keeps a duplicate of each descriptor, the JavaScript
// sockets are dropped (an idle spliced connection then costs no net.Socket, no stream state and
// no closures), and one epoll set per worker, watched by a single uv_poll on the worker's loop
// (no thread), reports what JavaScript must act on: a FIN (EPOLLRDHUP), a reset or error
// (EPOLLERR), a socket closed both ways (EPOLLHUP). Level-triggered: after a FIN a socket's
// interest drops to what is always reported (ERR, HUP); after HUP or ERR it leaves the set.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <node_api.h>
#include <uv.h>

#include "kernel_splice.h"

#define EVENTS_PER_WAIT 64

struct watch {
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  uv_poll_t poll;
  int epfd;
  int stopped;
  int owners; // the JavaScript external and the uv handle: freed when both let go
};

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  return 0;
}

static int int_arg(napi_env env, napi_value v, int32_t *out) {
  napi_valuetype type;
  return napi_typeof(env, v, &type) == napi_ok && type == napi_number && napi_get_value_int32(env, v, out) == napi_ok && *out >= 0 ? 0 : -1;
}

static struct watch *watch_arg(napi_env env, napi_value v) {
  napi_valuetype type;
  void *data = NULL;
  if (napi_typeof(env, v, &type) != napi_ok || type != napi_external || napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  struct watch *w = data;
  return w != NULL && !w->stopped ? w : NULL;
}

static void set_linger(int fd, int reset) {
  struct linger l = { .l_onoff = reset ? 1 : 0, .l_linger = 0 };
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

// Calls the JavaScript callback (id, side, events) for each ready socket.
static void on_ready(uv_poll_t *handle, int status, int events) {
  (void)events;
  struct watch *w = handle->data;
  if (w->stopped || status < 0) return;
  struct epoll_event ev[EVENTS_PER_WAIT];
  int n;
  do {
    do n = epoll_wait(w->epfd, ev, EVENTS_PER_WAIT, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return;
    napi_handle_scope scope;
    if (napi_open_handle_scope(w->env, &scope) != napi_ok) return;
    napi_value cb, recv, argv[3];
    if (napi_get_reference_value(w->env, w->callback, &cb) != napi_ok || cb == NULL || napi_get_global(w->env, &recv) != napi_ok) {
      napi_close_handle_scope(w->env, scope);
      return;
    }
    for (int i = 0; i < n && !w->stopped; i++) {
      uint64_t data = ev[i].data.u64;
      uint32_t got = ev[i].events;
      // Each descriptor was added with its own value: the pair id and the side.
      int fd = (int)(data >> 33);
      if (got & (EPOLLERR | EPOLLHUP)) epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
      else {
        struct epoll_event quiet = { .events = 0, .data.u64 = data };
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &quiet);
      }
      napi_value result;
      if (napi_create_uint32(w->env, (uint32_t)(data & 0xffffffffu) >> 1, &argv[0]) != napi_ok ||
          napi_create_uint32(w->env, (uint32_t)(data & 1), &argv[1]) != napi_ok || napi_create_uint32(w->env, got, &argv[2]) != napi_ok)
        break;
      if (napi_make_callback(w->env, w->async, recv, cb, 3, argv, &result) == napi_pending_exception) {
        napi_value err;
        napi_get_and_clear_last_exception(w->env, &err);
        napi_fatal_exception(w->env, err);
      }
    }
    napi_close_handle_scope(w->env, scope);
  } while (n == EVENTS_PER_WAIT && !w->stopped);
}

static void on_closed(uv_handle_t *handle) {
  struct watch *w = handle->data;
  if (--w->owners == 0) free(w);
}

static void stop(struct watch *w) {
  if (w->stopped) return;
  w->stopped = 1;
  napi_async_destroy(w->env, w->async);
  napi_delete_reference(w->env, w->callback);
  close(w->epfd);
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

// Only at teardown (the callback's reference keeps the watch alive until kernelWatchStop):
// stop polling, and leave the handle's memory to the loop, which may still walk it.
static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct watch *w = data;
  if (!w->stopped) {
    w->stopped = 1;
    uv_poll_stop(&w->poll);
    close(w->epfd);
  }
  if (--w->owners == 0) free(w);
}

// kernelWatchOpen(callback(id, side, events)): external — one epoll set, polled on this
// thread's loop; unref'd, so it never keeps a process alive by itself.
static napi_value watch_open(napi_env env, napi_callback_info info) {
  napi_value argv[1], name, result;
  napi_valuetype type;
  if (get_args(env, info, 1, argv) != 0 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "kernelWatchOpen(callback): a function");
    return NULL;
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  struct watch *w = calloc(1, sizeof *w);
  if (w == NULL) {
    weft_throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  w->env = env;
  w->owners = 2;
  w->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (w->epfd < 0) {
    int err = errno;
    free(w);
    weft_throw_errno(env, "epoll_create1", err);
    return NULL;
  }
  int rc = uv_poll_init(loop, &w->poll, w->epfd);
  if (rc == 0) rc = uv_poll_start(&w->poll, UV_READABLE, on_ready);
  if (rc != 0) {
    close(w->epfd);
    free(w);
    weft_throw_errno(env, "uv_poll_start(epoll)", -rc);
    return NULL;
  }
  w->poll.data = w;
  uv_unref((uv_handle_t *)&w->poll);
  if (napi_create_reference(env, argv[0], 1, &w->callback) != napi_ok || napi_create_string_utf8(env, "weft:kernelWatch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &w->async) != napi_ok || napi_create_external(env, w, finalize, NULL, &result) != napi_ok)
    return NULL;
  return result;
}

// kernelWatchAdd(watch, id, fdA, fdB): [dupA, dupB] — duplicates both descriptors (the
// caller then closes its own), makes closing them reset the connection (SO_LINGER 0, as for
// every proxied socket while bytes may be in flight: a crash must look like one), and
// watches them for FIN, reset and close. id: below 2^31.
static napi_value watch_add(napi_env env, napi_callback_info info) {
  napi_value argv[4], result, va, vb;
  int32_t id, fa, fb;
  struct watch *w;
  if (get_args(env, info, 4, argv) != 0 || (w = watch_arg(env, argv[0])) == NULL || int_arg(env, argv[1], &id) != 0 ||
      int_arg(env, argv[2], &fa) != 0 || int_arg(env, argv[3], &fb) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "kernelWatchAdd(watch, id, fdA, fdB): an open watch, an id and two descriptors");
    return NULL;
  }
  int fds[2] = { -1, -1 }, src[2] = { fa, fb }, err = 0, side;
  const char *what = "fcntl(F_DUPFD_CLOEXEC)";
  for (side = 0; side < 2; side++) {
    fds[side] = fcntl(src[side], F_DUPFD_CLOEXEC, 0);
    if (fds[side] < 0) {
      err = errno;
      goto fail;
    }
    set_linger(fds[side], 1);
  }
  what = "epoll_ctl(EPOLL_CTL_ADD)";
  for (side = 0; side < 2; side++) {
    struct epoll_event ev = { .events = EPOLLRDHUP, .data.u64 = ((uint64_t)(uint32_t)fds[side] << 33) | ((uint64_t)(uint32_t)id << 1) | (uint64_t)side };
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fds[side], &ev) != 0) {
      err = errno;
      goto fail;
    }
  }
  if (napi_create_array_with_length(env, 2, &result) != napi_ok || napi_create_int32(env, fds[0], &va) != napi_ok ||
      napi_create_int32(env, fds[1], &vb) != napi_ok || napi_set_element(env, result, 0, va) != napi_ok || napi_set_element(env, result, 1, vb) != napi_ok)
    return NULL;
  return result;
fail:
  for (side = 0; side < 2; side++) {
    if (fds[side] < 0) continue;
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, fds[side], NULL);
    set_linger(fds[side], 0); // ours is a duplicate: closing it ends nothing
    close(fds[side]);
  }
  weft_throw_errno(env, what, err);
  return NULL;
}

// kernelWatchShutdown(fd): number — shutdown(SHUT_WR), passing a FIN on; 0 or the errno.
static napi_value watch_shutdown(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int32_t fd;
  if (get_args(env, info, 1, argv) != 0 || int_arg(env, argv[0], &fd) != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "kernelWatchShutdown(fd): a descriptor");
    return NULL;
  }
  int rc = shutdown(fd, SHUT_WR) == 0 ? 0 : errno;
  if (napi_create_int32(env, rc, &result) != napi_ok) return NULL;
  return result;
}

// kernelWatchClose(watch, fd, reset): void — stops watching and closes the descriptor: an RST
// when `reset`, else a normal close (both directions have ended cleanly).
static napi_value watch_close(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd;
  bool reset;
  napi_valuetype type;
  if (get_args(env, info, 3, argv) != 0 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_external || int_arg(env, argv[1], &fd) != 0 ||
      napi_get_value_bool(env, argv[2], &reset) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "kernelWatchClose(watch, fd, reset): a watch, a descriptor and a boolean");
    return NULL;
  }
  void *data = NULL;
  napi_get_value_external(env, argv[0], &data);
  struct watch *w = data;
  if (w != NULL && !w->stopped) epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
  set_linger(fd, reset ? 1 : 0);
  close(fd);
  return NULL;
}

// kernelWatchStop(watch): void — no more callbacks; the descriptors it watched stay open. Safe twice.
static napi_value watch_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  napi_valuetype type;
  void *data = NULL;
  if (get_args(env, info, 1, argv) != 0 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_external || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "kernelWatchStop(watch): a watch");
    return NULL;
  }
  stop(data);
  return NULL;
}

int weft_kernel_watch_init(napi_env env, napi_value exports) {
  return weft_export_fn(env, exports, "kernelWatchOpen", watch_open) != 0 || weft_export_fn(env, exports, "kernelWatchAdd", watch_add) != 0 ||
         weft_export_fn(env, exports, "kernelWatchShutdown", watch_shutdown) != 0 || weft_export_fn(env, exports, "kernelWatchClose", watch_close) != 0 ||
         weft_export_fn(env, exports, "kernelWatchStop", watch_stop) != 0 ? -1 : 0;
}
