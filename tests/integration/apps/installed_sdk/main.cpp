// Answers every HTTP request with its method and path: proof that a project
// outside the source tree builds and runs a worker on the installed SDK.
#include <string>

#include "asgi_bridge/worker/http.hpp"
#include "asgi_bridge/worker/run.hpp"

using namespace asgi_bridge::worker;

int main(int argc, char** argv) {
  auto app = http_app([](const Request& request) {
    return Response::text("installed SDK: " + std::string(request.method()) + " " +
                          std::string(request.path()));
  });
  return run_main(std::move(app), argc, argv, "a worker built on the installed SDK");
}
