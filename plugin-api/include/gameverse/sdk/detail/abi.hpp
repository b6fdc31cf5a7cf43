// gameverse/sdk/detail/abi.hpp — small helpers over the C types; not for plugin code.
#pragma once

#include <gameverse/abi.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <string_view>

#include "gameverse/sdk/status.hpp"

namespace gameverse::sdk::detail {

// The host's function table, set once by gv_on_init. Each plugin library has its own copy.
inline const gv_host_api*& host_api() {
  static const gv_host_api* api = nullptr;
  return api;
}

inline std::string_view view(gv_bytes bytes) {
  return {reinterpret_cast<const char*>(bytes.data), bytes.size};
}

inline gv_bytes bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline void write_message(gv_message_buffer buffer, std::string_view message) {
  if (buffer.data == nullptr || buffer.capacity == 0) return;
  const size_t n = std::min(message.size(), buffer.capacity - 1);
  std::memcpy(buffer.data, message.data(), n);
  buffer.data[n] = '\0';
}

// A message buffer on the stack for one host call.
struct MessageBuffer {
  char text[512] = {};
  gv_message_buffer buffer() { return {text, sizeof text}; }
};

// Throws Error with the host's status and message when `code` is not OK.
inline void check(gv_status_code code, const MessageBuffer& message) {
  if (code != GV_STATUS_OK) throw Error(static_cast<StatusCode>(code), message.text);
}

// FAILED_PRECONDITION naming what needs ABI 1.<minor> when the host speaks an older minor.
inline void require_minor(const gv_host_api* api, uint32_t minor, const char* what) {
  if (api->abi_minor < minor) {
    throw Error(StatusCode::kFailedPrecondition,
                std::string(what) + " needs a host with ABI 1." + std::to_string(minor) +
                    " or newer; this host speaks ABI 1." + std::to_string(api->abi_minor));
  }
}

// A gv_byte_sink that appends to a std::string.
struct StringSink : gv_byte_sink {
  explicit StringSink(std::string& out) : out_(&out) {
    struct_size = sizeof(gv_byte_sink);
    append = [](gv_byte_sink* sink, const uint8_t* data, size_t size) {
      static_cast<StringSink*>(sink)->out_->append(reinterpret_cast<const char*>(data), size);
    };
  }

 private:
  std::string* out_;
};

inline Status status_of_current_exception() {
  try {
    throw;
  } catch (const Error& e) {
    return {e.code(), e.what()};
  } catch (const std::exception& e) {
    return {StatusCode::kInternal, e.what()};
  } catch (...) {
    return {StatusCode::kInternal, "unknown exception"};
  }
}

// Serializes `message` and hands the bytes to `use`: small messages on the stack, large ones on
// the heap. Never into a thread_local std::string: glibc keeps a library loaded for as long as a
// thread that ran a destructor-bearing thread_local of it lives, and the host's threads outlive
// every generation of a plugin.
template <class Message, class Use>
auto with_serialized(const Message& message, Use&& use) {
  constexpr size_t kStackBytes = 4096;
  const size_t size = message.ByteSizeLong();
  if (size <= kStackBytes) {
    uint8_t buffer[kStackBytes];
    message.SerializeWithCachedSizesToArray(buffer);
    return use(buffer, size);
  }
  std::string buffer;
  message.SerializeToString(&buffer);
  return use(reinterpret_cast<const uint8_t*>(buffer.data()), buffer.size());
}

template <class Message>
bool parse(std::string_view bytes, Message& out) {
  return bytes.size() <= static_cast<size_t>(std::numeric_limits<int>::max()) &&
         out.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

template <class Message>
bool parse(gv_bytes bytes, Message& out) {
  return parse(view(bytes), out);
}

// Whatever protobuf (lite) generates: the SDK takes messages without including protobuf.
template <class T>
concept ProtoMessage = requires(const T& m, T& out, std::string* s) {
  { m.SerializeToString(s) } -> std::same_as<bool>;
  { out.ParsePartialFromArray(static_cast<const void*>(nullptr), 0) } -> std::same_as<bool>;
  { m.IsInitialized() } -> std::same_as<bool>;
  m.InitializationErrorString();
  m.GetTypeName();
};

}  // namespace gameverse::sdk::detail
