// The servers `tools/gv test` starts for the suite, as their addresses (empty when not set).
#pragma once

#include <cstdlib>
#include <string>

namespace gameverse::testing {

inline std::string redis_url() {
  const char* url = std::getenv("GAMEVERSE_TEST_REDIS_URL");
  return url != nullptr ? url : "";
}

}  // namespace gameverse::testing
