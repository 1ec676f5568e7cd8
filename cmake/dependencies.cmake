# Every dependency comes from a Debian 12 package; a missing one stops the
# configure step with the name of the package to install.
function(asgi_bridge_require found package_name what)
  if(NOT ${found})
    message(FATAL_ERROR
      "${what} not found: install the Debian package '${package_name}' "
      "(scripts/install-deps does it for you)")
  endif()
endfunction()

find_package(msgpack-cxx CONFIG QUIET)
if(NOT msgpack-cxx_FOUND)
  find_package(msgpackc-cxx CONFIG QUIET NAMES msgpackc-cxx msgpack)
endif()
if(TARGET msgpackc-cxx)
  set(ASGI_MSGPACK_FOUND TRUE)
endif()
asgi_bridge_require(ASGI_MSGPACK_FOUND libmsgpack-cxx-dev "msgpack-c (C++)")

find_package(Boost 1.74 QUIET COMPONENTS system)
asgi_bridge_require(Boost_FOUND "libboost-dev libboost-system-dev" "Boost 1.74 (Beast, Asio)")

find_package(cppzmq CONFIG QUIET)
asgi_bridge_require(cppzmq_FOUND "cppzmq-dev libzmq3-dev" "ZeroMQ with cppzmq")

# Debian 12's HiredisConfigVersion.cmake is broken; pkg-config is reliable.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(HIREDIS QUIET IMPORTED_TARGET hiredis)
endif()
asgi_bridge_require(HIREDIS_FOUND libhiredis-dev "hiredis")

# HTTP/2 framing, HPACK and flow control (docs/http2.md).
if(PkgConfig_FOUND)
  pkg_check_modules(NGHTTP2 QUIET IMPORTED_TARGET libnghttp2)
endif()
asgi_bridge_require(NGHTTP2_FOUND libnghttp2-dev "nghttp2")

# The gateway's allocator (docs/decisions.md, "jemalloc in the gateway").
# ASGI_BRIDGE_JEMALLOC=OFF (sanitizer builds) links nothing in its place.
add_library(asgi_bridge_allocator INTERFACE)
if(ASGI_BRIDGE_JEMALLOC)
  if(PkgConfig_FOUND)
    pkg_check_modules(JEMALLOC QUIET IMPORTED_TARGET jemalloc)
  endif()
  asgi_bridge_require(JEMALLOC_FOUND libjemalloc-dev "jemalloc")
  target_link_libraries(asgi_bridge_allocator INTERFACE PkgConfig::JEMALLOC)
endif()

# TLS of the --bind listeners (--tls-cert/--tls-key), through boost::asio::ssl.
find_package(OpenSSL QUIET)
asgi_bridge_require(OpenSSL_FOUND libssl-dev "OpenSSL")

find_package(spdlog CONFIG QUIET)
asgi_bridge_require(spdlog_FOUND libspdlog-dev "spdlog")

find_package(nlohmann_json CONFIG QUIET)
asgi_bridge_require(nlohmann_json_FOUND nlohmann-json3-dev "nlohmann-json")

find_package(CLI11 CONFIG QUIET)
asgi_bridge_require(CLI11_FOUND libcli11-dev "CLI11")

find_package(Threads REQUIRED)

find_package(GTest CONFIG QUIET)
if(NOT GTest_FOUND)
  find_package(GTest QUIET)
endif()
asgi_bridge_require(GTest_FOUND libgtest-dev "GoogleTest")
