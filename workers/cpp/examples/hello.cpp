// asgi-bridge-example-hello: "Hello, world!" for every HTTP request.
// The benchmark app: nothing in it but the SDK's own cost.
#include "asgi_bridge/worker/http.hpp"
#include "asgi_bridge/worker/run.hpp"

using namespace asgi_bridge::worker;

int main(int argc, char** argv) {
  auto app = http_app([](const Request&) { return Response::text("Hello, world!"); });
  return run_main(std::move(app), argc, argv, "asgi-bridge example worker: Hello, world!");
}
