// The host side of gv_call: what a plugin's call handle points at. The gRPC server implements
// it for calls from the network; other callers (in-process service calls) can implement it too.
#pragma once

#include <gameverse/abi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "logging/request_id.hpp"

struct gv_call {
  virtual gv_status_code send(const uint8_t* data, size_t size) = 0;
  virtual gv_status_code finish(gv_status_code code, std::string_view message) = 0;
  virtual int64_t deadline_unix_ms() const = 0;
  virtual bool is_cancelled() const = 0;
  virtual size_t metadata(const char* key, gv_bytes* values, size_t max_values) const = 0;
  virtual void principal(gv_principal* out) const = 0;
  virtual gv_bytes method() const = 0;
  virtual gv_bytes peer() const = 0;
  // Who made the call (GV_CALL_ORIGIN_*): the network unless an in-process caller says otherwise.
  virtual gv_call_origin origin() const { return GV_CALL_ORIGIN_NETWORK; }
  // The size of the request message the call started with (0 for streams of requests): what
  // blocking work queued for the call holds, counted against the plugin's queue.
  virtual size_t request_bytes() const { return 0; }

  // The id the call's log lines and the calls it makes carry (metadata x-request-id); empty when
  // its kind of call has none. Valid while the call is.
  std::string_view request_id() const {
    gv_bytes id{};
    if (metadata(gameverse::logging::kRequestIdKey.data(), &id, 1) != 1) return {};
    return {reinterpret_cast<const char*>(id.data), id.size};
  }

  // True once the call was cancelled or released: blocking work queued for the call checks it
  // instead of the call, which may be gone by the time the work would start. Made on first use.
  std::shared_ptr<const std::atomic<bool>> ended_flag() {
    std::lock_guard lock(ended_mu_);
    if (!ended_) ended_ = std::make_shared<std::atomic<bool>>(ended_early_);
    return ended_;
  }
  // For the call's owner: when the call is cancelled, and before the plugin releases it.
  void mark_ended() {
    std::lock_guard lock(ended_mu_);
    ended_early_ = true;
    if (ended_) ended_->store(true);
  }

 protected:
  ~gv_call() = default;

 private:
  std::mutex ended_mu_;
  std::shared_ptr<std::atomic<bool>> ended_;
  bool ended_early_ = false;
};

namespace gameverse::plugin {

// A gv_byte_sink that collects what a plugin writes (save_state, stream detach).
struct ByteSink : gv_byte_sink {
  ByteSink() {
    struct_size = sizeof(gv_byte_sink);
    append = [](gv_byte_sink* self, const uint8_t* data, size_t size) {
      static_cast<ByteSink*>(self)->bytes.append(reinterpret_cast<const char*>(data), size);
    };
  }
  gv_bytes view() const { return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}; }
  std::string bytes;
};

}  // namespace gameverse::plugin
