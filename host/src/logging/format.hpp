// How the host's log lines look ([host] log_format), and the loggers it gives plugins.
//   text: 2026-11-30T04:39:30.123 info [echo] message [request_id=3f2a...]
//   json: {"time":"2026-11-30T04:39:30.123Z","level":"info","logger":"echo","generation":1,
//          "request_id":"3f2a...","message":"message"}
// Both read the thread's call and plugin-line context (logging/context.hpp) when a line is
// formatted, which the synchronous loggers do on the thread that writes it.
#pragma once

#include <spdlog/formatter.h>
#include <spdlog/logger.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace gameverse::logging {

enum class LogFormat { kText, kJson };

// "text" or "json"; nothing for any other value.
std::optional<LogFormat> parse_log_format(std::string_view name);

// The formatter of every sink the host logs to.
std::unique_ptr<spdlog::formatter> make_formatter(LogFormat format);

// Makes the host's logger (named "gameverse"; "host" in JSON lines) the default, on stderr, in
// `format` at `level` ("trace" .. "off"), and routes gRPC's own lines through it.
void setup_host_logging(const std::string& level, LogFormat format);

// Sends gRPC's own log lines (errors, unless GRPC_VERBOSITY asks for more) through the default
// logger, so that a JSON log stays one object per line. At exit, before the logger goes, they go
// back to stderr as plain text.
void route_grpc_logs_to_default_logger();

// Appends `text` as the contents of a JSON string: quotes, backslashes and control characters
// escaped, every byte that is not part of valid UTF-8 replaced by U+FFFD.
void append_json_string_contents(std::string_view text, spdlog::memory_buf_t& out);

// A plugin generation's logger: named after the plugin, writing to the host's sinks, and marking
// each of its lines as that plugin's, with the generation (logger "<plugin>" and "generation" in
// JSON lines).
class PluginLogger final : public spdlog::logger {
 public:
  // Writes where `host` writes, at `host`'s level.
  PluginLogger(const spdlog::logger& host, std::string plugin_name);
  void set_generation(uint64_t generation) { generation_.store(generation, std::memory_order_relaxed); }
  uint64_t generation() const { return generation_.load(std::memory_order_relaxed); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;

 private:
  std::atomic<uint64_t> generation_{0};
};

}  // namespace gameverse::logging
