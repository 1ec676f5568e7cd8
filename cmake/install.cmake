# Install rules: `cmake --install build --prefix P` puts the worker SDK (with
# the protocol codec and the bus transports it links), its headers and a
# package config in P, so that another project can
#   find_package(asgi_bridge REQUIRED)
#   target_link_libraries(my-worker PRIVATE asgi_bridge::worker)
# The executables (gateway, example workers) are installed too.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(ASGI_BRIDGE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/asgi_bridge)

install(TARGETS asgi_protocol asgi_bus asgi_worker
  EXPORT asgi_bridge-targets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY
    ${PROJECT_SOURCE_DIR}/protocol/include/
    ${PROJECT_SOURCE_DIR}/protocol/bus/include/
    ${PROJECT_SOURCE_DIR}/workers/cpp/include/
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS asgi-bridge asgi-bridge-example-hello asgi-bridge-example-echo
    asgi-bridge-example-chat
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

install(EXPORT asgi_bridge-targets
  NAMESPACE asgi_bridge::
  DESTINATION ${ASGI_BRIDGE_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/asgi_bridgeConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/asgi_bridgeConfig.cmake
  INSTALL_DESTINATION ${ASGI_BRIDGE_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/asgi_bridgeConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES
    ${CMAKE_CURRENT_BINARY_DIR}/asgi_bridgeConfig.cmake
    ${CMAKE_CURRENT_BINARY_DIR}/asgi_bridgeConfigVersion.cmake
  DESTINATION ${ASGI_BRIDGE_CMAKE_DIR})
