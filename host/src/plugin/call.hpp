// The host side of gv_call: what a plugin's call handle points at. The gRPC server implements
// it for calls from the network; other callers (in-process service calls) can implement it too.
#pragma once

#include <gameverse/abi.h>

#include <string>
#include <string_view>

struct gv_call {
  virtual gv_status_code send(const uint8_t* data, size_t size) = 0;
  virtual gv_status_code finish(gv_status_code code, std::string_view message) = 0;
  virtual int64_t deadline_unix_ms() const = 0;
  virtual bool is_cancelled() const = 0;
  virtual size_t metadata(const char* key, gv_bytes* values, size_t max_values) const = 0;
  virtual void principal(gv_principal* out) const = 0;
  virtual gv_bytes method() const = 0;
  virtual gv_bytes peer() const = 0;

 protected:
  ~gv_call() = default;
};

namespace gameverse::plugin {

// A gv_state_sink that collects what a plugin writes (save_state, stream detach).
struct StateSink : gv_state_sink {
  StateSink() {
    struct_size = sizeof(gv_state_sink);
    append = [](gv_state_sink* self, const uint8_t* data, size_t size) {
      static_cast<StateSink*>(self)->bytes.append(reinterpret_cast<const char*>(data), size);
    };
  }
  gv_bytes view() const { return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}; }
  std::string bytes;
};

}  // namespace gameverse::plugin
