#pragma once
// File descriptors: each client connection holds one, and so do the bus (a
// ZeroMQ socket per worker, Redis connections) and the admin endpoint. At
// start the gateway raises its soft RLIMIT_NOFILE to the hard limit (as nginx
// does with worker_rlimit_nofile); by default it then accepts client
// connections only up to that limit less a reserve, so the bus and the admin
// endpoint never find the table full (ZeroMQ's listener would spin on a
// failed accept, and /metrics would not answer).
#include <cstddef>
#include <string>

namespace asgi_bridge::gateway {

struct FdLimit {
  std::size_t before = 0;  // the soft limit the process was started with
  std::size_t now = 0;     // the soft limit after raising it
  std::string error;       // why it could not be raised (empty: it was, or needed not be)
};

// Raises the soft limit to the hard one.
FdLimit raise_fd_limit();

// Descriptors this process has open now (/proc/self/fd; 0 when unknown).
std::size_t open_fds();

// Descriptors kept for what comes after start and is not a client
// connection: a ZeroMQ socket per worker, Redis reconnections, admin
// requests, refused connections being answered.
std::size_t fd_reserve(std::size_t fd_limit);

// The --limit-connections that a value of 0 stands for: what is left of the
// limit once `in_use` descriptors (the gateway's own, at start) and the
// reserve are taken; at least 1.
std::size_t default_connection_limit(std::size_t fd_limit, std::size_t in_use);

}  // namespace asgi_bridge::gateway
