#pragma once
// Running a worker process: connect to every gateway, announce capacity,
// serve connections with `app` until SIGTERM/SIGINT, drain, say bye.
#include "asgi_bridge/worker/app.hpp"
#include "asgi_bridge/worker/options.hpp"

namespace asgi_bridge::worker {

// Blocks until the worker has drained after SIGTERM/SIGINT (a second signal
// skips the graceful wait). Returns the process exit code: 0 after a clean
// drain. Throws std::invalid_argument for a bad bus URL, std::runtime_error
// when a transport cannot be opened.
int run(App app, const Options& options);

// parse_command_line + run, with errors printed: the whole main() of a worker.
//   int main(int argc, char** argv) { return asgi_bridge::worker::run_main(app, argc, argv, "my worker"); }
int run_main(App app, int argc, char** argv, const std::string& description);

}  // namespace asgi_bridge::worker
