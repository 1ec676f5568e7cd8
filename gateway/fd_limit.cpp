#include "fd_limit.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace asgi_bridge::gateway {
namespace {

// An unlimited hard limit cannot be the soft one: Linux caps descriptors at
// fs.nr_open.
rlim_t usable_hard_limit(rlim_t hard) {
  if (hard != RLIM_INFINITY) return hard;
  rlim_t nr_open = 1024 * 1024;
  std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
  return nr_open;
}

}  // namespace

FdLimit raise_fd_limit() {
  FdLimit result;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    result.error = std::strerror(errno);
    return result;
  }
  result.before = result.now = static_cast<std::size_t>(limit.rlim_cur);
  rlim_t target = usable_hard_limit(limit.rlim_max);
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur >= target) return result;
  limit.rlim_cur = target;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    result.error = std::strerror(errno);
    return result;
  }
  result.now = static_cast<std::size_t>(target);
  return result;
}

std::size_t open_fds() {
  std::error_code ec;
  std::size_t count = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++count;
  return ec ? 0 : count;
}

// 1/16 of the table, at least 32 (ConnectionLimit::k_max_refusing of them
// for refusals being answered).
std::size_t fd_reserve(std::size_t fd_limit) { return std::max<std::size_t>(32, fd_limit / 16); }

std::size_t default_connection_limit(std::size_t fd_limit, std::size_t in_use) {
  auto taken = in_use + fd_reserve(fd_limit);
  return fd_limit > taken ? fd_limit - taken : 1;
}

}  // namespace asgi_bridge::gateway
