# Warnings as errors for our own targets only.
function(asgi_bridge_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror
    -Wno-error=deprecated-declarations)
endfunction()

# Asio 1.74's awaitable.hpp uses std::exchange without including <utility>,
# which GCC 12 rejects; force the include for every target that uses Asio.
function(asgi_bridge_asio target)
  target_compile_options(${target} PRIVATE -include utility)
  target_compile_definitions(${target} PRIVATE BOOST_ASIO_NO_DEPRECATED
    BOOST_BEAST_USE_STD_STRING_VIEW)
  target_link_libraries(${target} PRIVATE Boost::system Threads::Threads)
endfunction()
