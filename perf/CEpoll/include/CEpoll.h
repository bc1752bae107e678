// epoll for the chat benchmark's load generator (Swift's Glibc module does not export sys/epoll.h).
#include <sys/epoll.h>
