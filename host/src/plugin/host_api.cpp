// The function table plugins reach the host through (gv_host_api).
#include <spdlog/spdlog.h>

#include <cstring>

#include "plugin/call.hpp"
#include "plugin/plugin.hpp"

namespace gameverse::plugin {

namespace {

spdlog::level::level_enum to_spdlog(gv_log_level level) {
  switch (level) {
    case GV_LOG_TRACE: return spdlog::level::trace;
    case GV_LOG_DEBUG: return spdlog::level::debug;
    case GV_LOG_INFO: return spdlog::level::info;
    case GV_LOG_WARN: return spdlog::level::warn;
    default: return spdlog::level::err;
  }
}

void log(gv_host_plugin* self, gv_log_level level, const char* message, size_t size) {
  self->logger->log(to_spdlog(level), std::string_view(message, size));
}

bool log_enabled(gv_host_plugin* self, gv_log_level level) {
  return self->logger->should_log(to_spdlog(level));
}

template <class T>
const T* config_value(gv_host_plugin* self, const char* key) {
  if (key == nullptr) return nullptr;
  auto it = self->config.find(std::string_view(key));
  return it == self->config.end() ? nullptr : std::get_if<T>(&it->second);
}

bool config_string(gv_host_plugin* self, const char* key, gv_bytes* out) {
  const auto* value = config_value<std::string>(self, key);
  if (value == nullptr) return false;
  *out = {reinterpret_cast<const uint8_t*>(value->data()), value->size()};
  return true;
}

template <class T>
bool config_scalar(gv_host_plugin* self, const char* key, T* out) {
  const auto* value = config_value<T>(self, key);
  if (value == nullptr) return false;
  *out = *value;
  return true;
}

gv_status_code call_send(gv_call* call, const uint8_t* data, size_t size) {
  return call->send(data, size);
}

gv_status_code call_finish(gv_call* call, gv_status_code code, const char* message, size_t size) {
  return call->finish(code, message == nullptr ? std::string_view() : std::string_view(message, size));
}

int64_t call_deadline(gv_call* call) {
  return call->deadline_unix_ms();
}
bool call_is_cancelled(gv_call* call) {
  return call->is_cancelled();
}
size_t call_metadata(gv_call* call, const char* key, gv_bytes* values, size_t max_values) {
  return call->metadata(key, values, max_values);
}
void call_principal(gv_call* call, gv_principal* out) {
  call->principal(out);
}
gv_bytes call_method(gv_call* call) {
  return call->method();
}
gv_bytes call_peer(gv_call* call) {
  return call->peer();
}

}  // namespace

gv_host_api host_api(uint32_t minor) {
  gv_host_api api{};
  api.struct_size = sizeof api;
  api.abi_major = GV_ABI_VERSION_MAJOR;
  api.abi_minor = minor;
  api.log = &log;
  api.log_enabled = &log_enabled;
  api.config_string = &config_string;
  api.config_int = &config_scalar<int64_t>;
  api.config_double = &config_scalar<double>;
  api.config_bool = &config_scalar<bool>;
  api.call_send = &call_send;
  api.call_finish = &call_finish;
  api.call_deadline = &call_deadline;
  api.call_is_cancelled = &call_is_cancelled;
  api.call_metadata = &call_metadata;
  api.call_principal = &call_principal;
  api.call_method = &call_method;
  api.call_peer = &call_peer;
  return api;
}

}  // namespace gameverse::plugin
