// What a log line is about, kept per thread so that every line written while the host runs a
// plugin's hook for a call — by the plugin through gv_host_api.log or by the host — names that
// call's request id. The loggers are synchronous: a line is formatted on the thread that writes
// it, which is what lets the formatter read these (logging/format.hpp).
#pragma once

#include <cstdint>
#include <string_view>

namespace gameverse::logging {

// The call whose hooks run on this thread. Views: the scope that sets it keeps them alive.
struct CallLogContext {
  std::string_view request_id;  // empty: none known
  std::string_view plugin;      // the plugin serving the call; empty: the host answers it
  uint64_t generation = 0;      // that plugin's generation; 0: none
};

namespace detail {
inline constinit thread_local const CallLogContext* current_call = nullptr;
inline constinit thread_local const uint64_t* plugin_line_generation = nullptr;
}  // namespace detail

// The call this thread works for now; null outside calls.
inline const CallLogContext* current_call() {
  return detail::current_call;
}

// Makes `context` this thread's call until the scope ends, then restores the one before (calls
// nest: a plugin's in-process call to another runs on the caller's thread). `context` is read,
// not copied, so its owner may fill it in while the scope is open.
class CallLogScope {
 public:
  explicit CallLogScope(const CallLogContext* context) : outer_(detail::current_call) {
    detail::current_call = context;
  }
  ~CallLogScope() { detail::current_call = outer_; }
  CallLogScope(const CallLogScope&) = delete;
  CallLogScope& operator=(const CallLogScope&) = delete;

 private:
  const CallLogContext* outer_;
};

// Set while a plugin's logger writes a line (logging::PluginLogger): the line is the plugin's,
// and this is its generation. Null: a host line.
inline const uint64_t* plugin_line_generation() {
  return detail::plugin_line_generation;
}

class PluginLineScope {
 public:
  explicit PluginLineScope(const uint64_t* generation) : outer_(detail::plugin_line_generation) {
    detail::plugin_line_generation = generation;
  }
  ~PluginLineScope() { detail::plugin_line_generation = outer_; }
  PluginLineScope(const PluginLineScope&) = delete;
  PluginLineScope& operator=(const PluginLineScope&) = delete;

 private:
  const uint64_t* outer_;
};

}  // namespace gameverse::logging
