// glibc's malloc tuning (mallopt), which Swift's Glibc module leaves out: the CLI keeps chunk
// buffers in the heap, and `safechat serve` sets the mmap threshold so that megabyte transfer
// buffers go back to the system when freed.
#ifndef SAFECHAT_CMALLOC_SHIM_H
#define SAFECHAT_CMALLOC_SHIM_H
#include <malloc.h>
#endif
