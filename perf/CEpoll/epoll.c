// Intentionally empty: the target exists to export <sys/epoll.h> to Swift.
#include "CEpoll.h"
