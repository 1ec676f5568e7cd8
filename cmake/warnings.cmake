# Warnings as errors for our own targets only.
function(asgi_bridge_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror
    -Wno-error=deprecated-declarations)
  # GCC's flow-based warnings are unreliable under -fsanitize (its manual
  # says so): ASan's instrumentation makes -Wmaybe-uninitialized flag Beast's
  # boost::optional, and -Wrestrict an std::string moved out of a variant.
  # The normal build keeps them as errors.
  if(ASGI_BRIDGE_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized -Wno-error=restrict
      -Wno-error=array-bounds -Wno-error=stringop-overflow -Wno-error=stringop-overread)
  endif()
endfunction()

# Asio 1.74's awaitable.hpp uses std::exchange without including <utility>,
# which GCC 12 rejects; force the include for every target that uses Asio.
function(asgi_bridge_asio target)
  target_compile_options(${target} PRIVATE -include utility)
  # GCC 12 flags a coroutine frame freed by Asio's awaitable operator delete
  # as mismatched once it inlines the frame's allocation into a caller (it
  # began with websocket_session.cpp awaiting the TLS-capable ClientStream);
  # the operator new/delete pair is Asio's own and matched.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wno-mismatched-new-delete)
  endif()
  target_compile_definitions(${target} PRIVATE BOOST_ASIO_NO_DEPRECATED
    BOOST_BEAST_USE_STD_STRING_VIEW)
  target_link_libraries(${target} PRIVATE Boost::system Threads::Threads)
endfunction()
