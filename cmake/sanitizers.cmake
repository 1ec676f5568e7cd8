# Build options for finding memory and undefined-behaviour bugs
# (docs/testing.md):
#   ASGI_BRIDGE_SANITIZE=ON  every target with AddressSanitizer and
#                            UndefinedBehaviorSanitizer; the first report
#                            aborts the process (scripts/test-sanitizers).
#   ASGI_BRIDGE_JEMALLOC=OFF glibc's malloc instead of jemalloc in the gateway
#                            and the example workers; ASan replaces malloc and
#                            must see every allocation, so SANITIZE turns this
#                            off unless told otherwise.
#   ASGI_BRIDGE_FUZZ=ON      the libFuzzer targets of tests/fuzz (clang only;
#                            scripts/fuzz), also built with ASan and UBSan.
option(ASGI_BRIDGE_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(ASGI_BRIDGE_FUZZ "Build the libFuzzer targets (clang)" OFF)
if(ASGI_BRIDGE_SANITIZE OR ASGI_BRIDGE_FUZZ)
  set(asgi_bridge_jemalloc_default OFF)
else()
  set(asgi_bridge_jemalloc_default ON)
endif()
option(ASGI_BRIDGE_JEMALLOC "Link jemalloc into the gateway and the example workers" ${asgi_bridge_jemalloc_default})
if((ASGI_BRIDGE_SANITIZE OR ASGI_BRIDGE_FUZZ) AND ASGI_BRIDGE_JEMALLOC)
  message(FATAL_ERROR "AddressSanitizer needs glibc's malloc: configure with -DASGI_BRIDGE_JEMALLOC=OFF")
endif()

if(ASGI_BRIDGE_SANITIZE OR ASGI_BRIDGE_FUZZ)
  # -fno-sanitize-recover: a UBSan report aborts like an ASan one, so a test
  # run cannot pass with a report buried in a log. No vptr check: it probes
  # memory through a pipe, so in a process out of file descriptors (which
  # test_resource_limits.py makes the gateway on purpose) every check reports
  # an invalid vptr that is not there; ASan still catches a freed object.
  set(asgi_bridge_sanitizers -fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=all)
  # -O1, after the build type's -O2: the level ASan's authors recommend, and
  # half the compile time (websocket_session.cpp: 266 s at -O2 -g, 122 s at
  # -O1 -g1), the longest step of scripts/test.
  add_compile_options(${asgi_bridge_sanitizers} -fno-omit-frame-pointer -O1)
  add_link_options(${asgi_bridge_sanitizers})
endif()
if(ASGI_BRIDGE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "ASGI_BRIDGE_FUZZ needs clang: configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  # Coverage for libFuzzer in every library; the fuzz targets add -fsanitize=fuzzer.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
