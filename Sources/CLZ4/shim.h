// liblz4's block API: SafeChat compresses each chunk as one independent LZ4 block.
#ifndef SAFECHAT_CLZ4_SHIM_H
#define SAFECHAT_CLZ4_SHIM_H
#include <lz4.h>
#endif
