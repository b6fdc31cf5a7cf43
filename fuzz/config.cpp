// The TOML config loader: any text gives a config or errors that name where, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto result = gameverse::config::parse_config(text, "fuzz.toml", "/nonexistent/gameverse");
  // Exactly one of the two, as the loader promises; every error renders.
  if (result.config.has_value() == !result.errors.empty()) std::abort();
  for (const auto& error : result.errors) {
    if (error.to_string().empty()) std::abort();
  }
  return 0;
}
