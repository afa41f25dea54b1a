{
  "targets": [
    {
      "target_name": "weft_native",
      "sources": ["weft_native.c", "weft_netns.c", "kernel_splice.c", "kernel_watch.c"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
