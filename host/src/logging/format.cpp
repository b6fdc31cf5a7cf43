#include "logging/format.hpp"

#include <grpc/support/log.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "logging/context.hpp"

namespace gameverse::logging {

namespace {

std::string_view as_std(spdlog::string_view_t s) {
  return {s.data(), s.size()};
}

void append(spdlog::memory_buf_t& out, std::string_view text) {
  out.append(text.data(), text.data() + text.size());
}

// Text lines end with " [request_id=...]" while the thread works for a call.
class RequestIdFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& out) override {
    const CallLogContext* call = current_call();
    if (call == nullptr || call->request_id.empty()) return;
    append(out, " [request_id=");
    append(out, call->request_id);  // sane characters only (request_id.hpp)
    out.push_back(']');
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<RequestIdFlag>(); }
};

// The length of the valid UTF-8 sequence at the start of `s`, or 0 when it does not start with
// one (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
size_t utf8_sequence_length(std::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
  } else {
    return 0;
  }
  if (s.size() < length || byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
  }
  return length;
}

// One JSON object per line. Field order is fixed, so lines also read well to a person.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& out) override {
    append(out, "{\"time\":\"");
    append_time(msg.time, out);
    append(out, "\",\"level\":\"");
    append(out, as_std(spdlog::level::to_string_view(msg.level)));
    append(out, "\",\"logger\":\"");
    const uint64_t* generation = plugin_line_generation();
    if (generation != nullptr) {
      append_json_string_contents(as_std(msg.logger_name), out);
      out.push_back('"');
      append_generation(*generation, out);
    } else {
      append(out, "host\"");
    }
    if (const CallLogContext* call = current_call(); call != nullptr) {
      if (!call->request_id.empty()) {
        append(out, ",\"request_id\":\"");
        append_json_string_contents(call->request_id, out);
        out.push_back('"');
      }
      // A host line about a plugin's call names the plugin and generation serving it.
      if (generation == nullptr && !call->plugin.empty()) {
        append(out, ",\"plugin\":\"");
        append_json_string_contents(call->plugin, out);
        out.push_back('"');
        append_generation(call->generation, out);
      }
    }
    append(out, ",\"message\":\"");
    append_json_string_contents(as_std(msg.payload), out);
    append(out, "\"}\n");
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }

 private:
  // 0: a generation not numbered yet (a plugin still loading), left out.
  static void append_generation(uint64_t generation, spdlog::memory_buf_t& out) {
    if (generation == 0) return;
    append(out, ",\"generation\":");
    fmt::format_to(std::back_inserter(out), "{}", generation);
  }

  // RFC 3339 in UTC with milliseconds; the part down to the second is made once per second.
  void append_time(spdlog::log_clock::time_point time, spdlog::memory_buf_t& out) {
    const auto since_epoch = time.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    if (seconds.count() != cached_second_) {
      cached_second_ = seconds.count();
      const std::time_t t = static_cast<std::time_t>(cached_second_);
      std::tm tm{};
      gmtime_r(&t, &tm);
      const size_t n = std::strftime(cached_prefix_, sizeof cached_prefix_, "%Y-%m-%dT%H:%M:%S", &tm);
      cached_prefix_size_ = n;
    }
    out.append(cached_prefix_, cached_prefix_ + cached_prefix_size_);
    const char fraction[] = {'.', static_cast<char>('0' + millis / 100),
                             static_cast<char>('0' + millis / 10 % 10), static_cast<char>('0' + millis % 10),
                             'Z'};
    out.append(fraction, fraction + sizeof fraction);
  }

  int64_t cached_second_ = INT64_MIN;
  char cached_prefix_[32] = {};
  size_t cached_prefix_size_ = 0;
};

void log_grpc_line(gpr_log_func_args* args) {
  const spdlog::level::level_enum level = args->severity == GPR_LOG_SEVERITY_ERROR  ? spdlog::level::err
                                          : args->severity == GPR_LOG_SEVERITY_INFO ? spdlog::level::info
                                                                                    : spdlog::level::debug;
  spdlog::log(level, "grpc: {} ({}:{})", args->message, args->file, args->line);
}

void log_grpc_line_plainly(gpr_log_func_args* args) {
  std::fprintf(stderr, "grpc: %s (%s:%d)\n", args->message, args->file, args->line);
}

}  // namespace

std::optional<LogFormat> parse_log_format(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return std::nullopt;
}

std::unique_ptr<spdlog::formatter> make_formatter(LogFormat format) {
  if (format == LogFormat::kJson) return std::make_unique<JsonFormatter>();
  auto text = std::make_unique<spdlog::pattern_formatter>();
  text->add_flag<RequestIdFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v%*");
  return text;
}

void setup_host_logging(const std::string& level, LogFormat format) {
  auto logger = spdlog::stderr_color_mt("gameverse");
  logger->set_formatter(make_formatter(format));
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
  route_grpc_logs_to_default_logger();
}

void route_grpc_logs_to_default_logger() {
  static std::once_flag once;
  std::call_once(once, [] {
    spdlog::default_logger_raw();  // spdlog's registry exists before the exit handler is registered,
    std::atexit([] { gpr_set_log_function(log_grpc_line_plainly); });  // so the handler runs before it goes
  });
  gpr_set_log_function(log_grpc_line);
}

void append_json_string_contents(std::string_view text, spdlog::memory_buf_t& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t plain_from = 0;  // runs of bytes that need no escape are appended at once
  const auto flush = [&](size_t to) { out.append(text.data() + plain_from, text.data() + to); };
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (const size_t length = utf8_sequence_length(text.substr(i)); length != 0) {
        i += length;
        continue;
      }
    }
    flush(i);
    switch (c) {
      case '"': append(out, "\\\""); break;
      case '\\': append(out, "\\\\"); break;
      case '\n': append(out, "\\n"); break;
      case '\r': append(out, "\\r"); break;
      case '\t': append(out, "\\t"); break;
      case '\b': append(out, "\\b"); break;
      case '\f': append(out, "\\f"); break;
      default:
        if (c < 0x20) {
          const char escape[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
          out.append(escape, escape + sizeof escape);
        } else {
          append(out, "\xef\xbf\xbd");  // U+FFFD for a byte that is not valid UTF-8
        }
    }
    plain_from = ++i;
  }
  flush(text.size());
}

PluginLogger::PluginLogger(const spdlog::logger& host, std::string plugin_name) : spdlog::logger(host) {
  name_ = std::move(plugin_name);
}

void PluginLogger::sink_it_(const spdlog::details::log_msg& msg) {
  const uint64_t generation = this->generation();
  const PluginLineScope line(&generation);
  spdlog::logger::sink_it_(msg);
}

}  // namespace gameverse::logging
