// Registers the network-namespace and BPF link functions (weft_netns.c) on the addon's exports.
#ifndef WEFT_NETNS_H
#define WEFT_NETNS_H
#include <node_api.h>
int weft_register_netns(napi_env env, napi_value exports);
#endif
