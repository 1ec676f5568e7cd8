#include "notifier.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asgi_bridge::worker::detail {

Notifier::Notifier(const boost::asio::any_io_executor& executor) : timer_(executor) {
  timer_.expires_at(boost::asio::steady_timer::time_point::max());
}

boost::asio::awaitable<void> Notifier::wait() {
  boost::system::error_code cancelled;
  co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, cancelled));
}

void Notifier::notify() { timer_.cancel(); }

}  // namespace asgi_bridge::worker::detail
