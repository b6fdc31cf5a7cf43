// gameverse/sdk/plugin.hpp — the header-only C++ SDK over gameverse/abi.h: the one include of a
// plugin.
//
// A plugin is a class with a constructor taking InitContext& and a static describe() that
// declares its services, config keys and collections once:
//
//   class Echo final : public gameverse::sdk::Plugin {
//    public:
//     explicit Echo(gameverse::sdk::InitContext& init);
//     static void describe(gameverse::sdk::PluginBuilder<Echo>& b) {
//       b.service("gameverse.echo.v1.Echo").unary("Echo", &Echo::echo, gameverse::sdk::kPublic);
//     }
//     gameverse::sdk::Status echo(gameverse::sdk::CallContext&, const EchoRequest&, EchoReply&);
//   };
//   GAMEVERSE_PLUGIN(Echo, "echo", "1.0.0", "Echoes what it is sent")
//
// The parts: status.hpp (Status, Error), call.hpp (CallContext, responders, streams), store.hpp
// (Store, Cache), host.hpp (Host: config, timers, pub/sub, metrics, calls, blocking work),
// builder.hpp (PluginBuilder, ServiceBuilder, config rules). Messages are protobuf-lite types.
// No exception leaves a trampoline: sdk::Error becomes its status, anything else INTERNAL.
#pragma once

#include <gameverse/abi.h>

#include <memory>
#include <string>
#include <vector>

#include "gameverse/sdk/access.hpp"
#include "gameverse/sdk/builder.hpp"
#include "gameverse/sdk/call.hpp"
#include "gameverse/sdk/host.hpp"
#include "gameverse/sdk/status.hpp"
#include "gameverse/sdk/store.hpp"

namespace gameverse::sdk {

// Base class of a plugin.
class Plugin {
 public:
  virtual ~Plugin() = default;
  // State handed to the next generation on hot reload (InitContext::previous_state).
  virtual std::string save_state() { return {}; }
};

namespace detail {

// Everything the descriptor points at, built once per loaded library.
template <class P>
struct Registration {
  PluginBuilder<P> builder;
  std::vector<gv_method_desc> methods;
  std::vector<gv_config_key_desc> config_keys;
  std::vector<std::vector<const char*>> allowed_values;  // per config key
  std::vector<const char*> dependencies;
  std::vector<const char*> collections;
  gv_plugin_descriptor descriptor{};

  static Registration& get() {
    static Registration registration;
    return registration;
  }

  static gv_status_code on_init(const gv_host_api* host, gv_host_plugin* self, gv_bytes prev_state,
                                void** out_instance, gv_message_buffer error) {
    try {
      host_api() = host;
      plugin_self() = self;
      InitContext init{Host(host, self), view(prev_state)};
      *out_instance = new P(init);
      return GV_STATUS_OK;
    } catch (...) {
      Status status = status_of_current_exception();
      write_message(error, status.message());
      return status.is_ok() ? GV_STATUS_INTERNAL : static_cast<gv_status_code>(status.code());
    }
  }

  static void on_call_start(void* instance, gv_call* call, uint32_t method_index, gv_bytes request,
                            void** out_call_state) {
    try {
      auto state = get().builder.methods_.at(method_index).start(*static_cast<P*>(instance), call, request);
      if (state) *out_call_state = new std::shared_ptr<CallState>(std::move(state));
    } catch (...) {
      // Only reachable when the state itself could not be allocated: the call is unfinished.
      finish_call(call, status_of_current_exception());
    }
  }

  static CallState& state_of(void* call_state) {
    return **static_cast<std::shared_ptr<CallState>*>(call_state);
  }

  static void on_call_message(void*, gv_call*, void* call_state, gv_bytes message) {
    if (!call_state) return;
    CallState& state = state_of(call_state);
    if (state.inbound_ && !state.finished()) state.inbound_->message(message);
  }

  static void on_call_half_close(void*, gv_call*, void* call_state) {
    if (!call_state) return;
    CallState& state = state_of(call_state);
    if (state.inbound_ && !state.finished()) state.inbound_->half_close();
  }

  static void on_call_cancel(void*, gv_call*, void* call_state) {
    if (call_state) state_of(call_state).cancel();
  }

  static void on_call_release(void*, gv_call*, void* call_state) {
    if (!call_state) return;
    auto* box = static_cast<std::shared_ptr<CallState>*>(call_state);
    (*box)->release();
    delete box;
  }

  static gv_status_code on_call_detach(void*, gv_call*, void* call_state, gv_byte_sink* sink) {
    if (!call_state) return GV_STATUS_FAILED_PRECONDITION;
    try {
      std::string detached;
      if (!state_of(call_state).detach(detached)) return GV_STATUS_FAILED_PRECONDITION;
      sink->append(sink, reinterpret_cast<const uint8_t*>(detached.data()), detached.size());
      return GV_STATUS_OK;
    } catch (...) {
      return GV_STATUS_INTERNAL;
    }
  }

  static gv_status_code on_call_adopt(void* instance, gv_call* call, uint32_t method_index, gv_bytes detached,
                                      void** out_call_state) {
    try {
      const auto& method = get().builder.methods_.at(method_index);
      if (!method.adopt) return GV_STATUS_UNIMPLEMENTED;
      auto state = method.adopt(*static_cast<P*>(instance), call, detached);
      if (state) *out_call_state = new std::shared_ptr<CallState>(std::move(state));
      return GV_STATUS_OK;
    } catch (...) {
      return GV_STATUS_INTERNAL;
    }
  }

  static gv_status_code on_save_state(void* instance, gv_byte_sink* sink, gv_message_buffer error) {
    try {
      std::string state = static_cast<P*>(instance)->save_state();
      sink->append(sink, reinterpret_cast<const uint8_t*>(state.data()), state.size());
      return GV_STATUS_OK;
    } catch (...) {
      Status status = status_of_current_exception();
      write_message(error, status.message());
      return status.is_ok() ? GV_STATUS_INTERNAL : static_cast<gv_status_code>(status.code());
    }
  }

  static void on_shutdown(void* instance) { delete static_cast<P*>(instance); }

  Registration() { P::describe(builder); }

  const gv_plugin_descriptor* describe(const char* name, const char* version, const char* description,
                                       gv_bytes descriptor_set) {
    for (const auto& m : builder.methods_) {
      methods.push_back({sizeof(gv_method_desc), m.full_name.c_str(), m.kind, m.flags,
                         m.access.empty() ? nullptr : m.access.c_str()});
    }
    allowed_values.resize(builder.config_keys_.size());
    for (size_t i = 0; i < builder.config_keys_.size(); ++i) {
      const auto& k = builder.config_keys_[i];
      for (const auto& v : k.rule.allowed) allowed_values[i].push_back(v.c_str());
      config_keys.push_back(
          {sizeof(gv_config_key_desc), k.key.c_str(), k.type, k.required,
           k.default_literal ? k.default_literal->c_str() : nullptr, k.description.c_str(), k.rule.rules,
           k.rule.min_int, k.rule.max_int, k.rule.min_double, k.rule.max_double,
           allowed_values[i].empty() ? nullptr : allowed_values[i].data(), allowed_values[i].size()});
    }
    for (const auto& d : builder.dependencies_) dependencies.push_back(d.c_str());
    for (const auto& c : builder.collections_) collections.push_back(c.c_str());

    descriptor.struct_size = sizeof descriptor;
    descriptor.abi_major = GV_ABI_VERSION_MAJOR;
    descriptor.abi_minor = GV_ABI_VERSION_MINOR;
    descriptor.name = name;
    descriptor.version = version;
    descriptor.description = description;
    descriptor.descriptor_set = descriptor_set;
    descriptor.methods = methods.data();
    descriptor.method_count = methods.size();
    descriptor.config_keys = config_keys.data();
    descriptor.config_key_count = config_keys.size();
    descriptor.dependencies = dependencies.data();
    descriptor.dependency_count = dependencies.size();
    descriptor.on_init = &on_init;
    descriptor.on_call_start = &on_call_start;
    descriptor.on_call_message = &on_call_message;
    descriptor.on_call_half_close = &on_call_half_close;
    descriptor.on_call_cancel = &on_call_cancel;
    descriptor.on_call_release = &on_call_release;
    descriptor.on_save_state = &on_save_state;
    descriptor.on_shutdown = &on_shutdown;
    descriptor.on_call_detach = &on_call_detach;
    descriptor.on_call_adopt = &on_call_adopt;
    descriptor.collections = collections.data();
    descriptor.collection_count = collections.size();
    descriptor.method_access = nullptr;  // 1.2: each method carries its own
    descriptor.method_desc_size = sizeof(gv_method_desc);
    descriptor.config_key_desc_size = sizeof(gv_config_key_desc);
    return &descriptor;
  }
};

// The descriptor, or null with the reason in host->entry_error (a mistake in describe()).
template <class P>
const gv_plugin_descriptor* entry(const gv_host_info* host, const char* name, const char* version,
                                  const char* description, gv_bytes descriptor_set) noexcept {
  try {
    static const gv_plugin_descriptor* descriptor =
        Registration<P>::get().describe(name, version, description, descriptor_set);
    return descriptor;
  } catch (...) {
    if (host != nullptr &&
        host->struct_size >= offsetof(gv_host_info, entry_error) + sizeof(gv_message_buffer)) {
      write_message(host->entry_error, "describe() failed: " + status_of_current_exception().message());
    }
    return nullptr;
  }
}

}  // namespace detail
}  // namespace gameverse::sdk

// The FileDescriptorSet that gameverse_add_plugin() embeds from the plugin's PROTOS.
extern "C" const unsigned char gv_embedded_descriptor_set_data[];
extern "C" const size_t gv_embedded_descriptor_set_size;

// Exports the plugin: the one line after the class.
#define GAMEVERSE_PLUGIN(PluginClass, name, version, description)                                        \
  extern "C" GV_PLUGIN_EXPORT const gv_plugin_descriptor* gv_plugin_entry_v1(const gv_host_info* host) { \
    return ::gameverse::sdk::detail::entry<PluginClass>(                                                 \
        host, name, version, description,                                                                \
        gv_bytes{gv_embedded_descriptor_set_data, gv_embedded_descriptor_set_size});                     \
  }
