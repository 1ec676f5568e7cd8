#include "notifier.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asgi_bridge::worker::detail {

boost::asio::awaitable<void> Notifier::wait() {
  if (!timer_) timer_.emplace(executor_, boost::asio::steady_timer::time_point::max());
  boost::system::error_code cancelled;
  co_await timer_->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, cancelled));
}

}  // namespace asgi_bridge::worker::detail
