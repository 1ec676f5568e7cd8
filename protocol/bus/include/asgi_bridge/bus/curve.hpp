#pragma once
// CurveZMQ key files (docs/security.md): ZeroMQ's Z85 certificate text format,
// as czmq's zcert and pyzmq's zmq.auth.create_certificates write it, so that
// ZeroMQ's own tools read our keys and we read theirs:
//
//   metadata
//   curve
//       public-key = "<40 Z85 characters>"
//       secret-key = "<40 Z85 characters>"     (NAME.key_secret only)
#include <string>
#include <vector>

namespace asgi_bridge::bus {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85; empty in a public certificate
};

// Throws std::runtime_error naming the file when it cannot be read or holds
// no valid public key (nor, with need_secret, a secret key).
CurveKeyPair read_certificate(const std::string& path, bool need_secret);

// The public keys allowed to connect: every NAME.key file of a directory (as
// zmq.auth's load_certificates), or every public-key line of one file.
// Throws std::runtime_error naming the path when it cannot be read.
std::vector<std::string> read_authorized_keys(const std::string& path);

// Writes a new key pair: BASE.key (public, mode 0644) and BASE.key_secret
// (both keys, mode 0600). Throws std::runtime_error on failure.
void write_certificates(const std::string& base);

// Key files of a ZeroMQ bus; all empty: no CURVE (plain ZeroMQ).
struct CurveOptions {
  std::string secret_key_file;   // our key pair (gateway and worker)
  std::string authorized_keys;   // gateway: allow-list of worker public keys
  std::string server_key_file;   // worker: the gateway's public key
  bool enabled() const { return !secret_key_file.empty(); }
};

}  // namespace asgi_bridge::bus
