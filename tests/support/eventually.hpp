// Waiting for something another thread or process does.
#pragma once

#include <chrono>
#include <thread>

namespace gameverse::testing {

// Polls `condition` until it holds or `limit` passes; for waiting on the host, never for
// asserting how long something took.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto give_up = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace gameverse::testing
