#ifndef TIDEMARK_CZSTD_SHIM_H
#define TIDEMARK_CZSTD_SHIM_H
// Only includes headers: libzstd is used as-is. ZSTD_STATIC_LINKING_ONLY is not
// defined, so only the stable API is visible.
#include <zstd.h>
#include <zstd_errors.h>
#endif
