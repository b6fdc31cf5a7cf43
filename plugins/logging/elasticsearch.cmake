# The Elasticsearch sink of the logging service: the _bulk format, response parsing, backoff and
# the bounded buffer (domain/, plain C++), and the sink that ships over HTTP or HTTPS with
# Boost.Beast and OpenSSL (infrastructure/). A static PIC library the logging plugin links; it
# starts no threads.
add_library(logging_elasticsearch STATIC
  ${CMAKE_CURRENT_LIST_DIR}/domain/elasticsearch_bulk.cpp
  ${CMAKE_CURRENT_LIST_DIR}/infrastructure/elasticsearch_sink.cpp)
# Compiled like a plugin's own code: nothing exported, and no unique symbols (Asio has many) that
# could pin the plugin in memory and defeat unloading.
set_target_properties(logging_elasticsearch PROPERTIES POSITION_INDEPENDENT_CODE ON
  CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
target_compile_options(logging_elasticsearch PRIVATE $<$<COMPILE_LANG_AND_ID:CXX,GNU>:-fno-gnu-unique>)
target_include_directories(logging_elasticsearch PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(logging_elasticsearch PUBLIC nlohmann_json::nlohmann_json PRIVATE Boost::headers
                      OpenSSL::SSL OpenSSL::Crypto Threads::Threads)
# Boost.Asio synchronises with std::atomic_thread_fence, which GCC warns TSan cannot see: the
# warning is about Boost's code, and TSan still checks ours (as for the host's HTTP server).
if(GAMEVERSE_SANITIZE STREQUAL "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(logging_elasticsearch PRIVATE -Wno-tsan)
endif()

# The tests need GTest and CTest, which the top-level CMakeLists.txt sets up after plugins/; so
# they are defined at the end of the top-level directory, wherever this file is included from.
function(gameverse_logging_elasticsearch_tests dir)
  if(NOT BUILD_TESTING)
    return()
  endif()
  add_executable(logging_elasticsearch_tests ${dir}/tests/elasticsearch_bulk_test.cpp
                                             ${dir}/tests/elasticsearch_sink_test.cpp)
  target_include_directories(logging_elasticsearch_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/support)
  target_link_libraries(logging_elasticsearch_tests PRIVATE logging_elasticsearch Boost::headers
                        OpenSSL::SSL OpenSSL::Crypto Threads::Threads GTest::gtest_main)
  target_compile_definitions(logging_elasticsearch_tests PRIVATE
    GV_ES_TEMPLATE="${PROJECT_SOURCE_DIR}/config/elasticsearch/gameverse-logs-template.json")
  if(GAMEVERSE_SANITIZE STREQUAL "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(logging_elasticsearch_tests PRIVATE -Wno-tsan)
  endif()
  gtest_discover_tests(logging_elasticsearch_tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)
endfunction()
# (A deferred call's arguments are evaluated when it runs, hence EVAL: the folder is fixed now.)
cmake_language(EVAL CODE "cmake_language(DEFER DIRECTORY [[${CMAKE_SOURCE_DIR}]]
                         CALL gameverse_logging_elasticsearch_tests [[${CMAKE_CURRENT_LIST_DIR}]])")
