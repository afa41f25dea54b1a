// Shared between the addon's source files: error and export helpers (weft_native.c) and the
// kernel-splice functions (kernel_splice.c).
#ifndef WEFT_KERNEL_SPLICE_H
#define WEFT_KERNEL_SPLICE_H
#include <node_api.h>

void weft_throw_errno(napi_env env, const char *what, int err);
int weft_export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb);
int weft_kernel_splice_init(napi_env env, napi_value exports);
int weft_kernel_watch_init(napi_env env, napi_value exports); // kernel_watch.c

#endif
