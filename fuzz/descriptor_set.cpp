// A plugin's embedded FileDescriptorSet, as the host loads it into the generation's private
// DescriptorPool (Plugin::open_builtin runs the same checks as a plugin file's load: negotiate,
// build the pool, check the methods against it), then as hot reload compares it with the
// generation it would replace (the echo example's). Input: a call kind byte, the length of a
// method name, the name ("/package.Service/Method"), then the descriptor set.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "plugin/plugin.hpp"
#include "plugin/route_compatibility.hpp"

namespace {

namespace plugin = gameverse::plugin;

// The hooks a descriptor must have; the load never runs them.
gv_status_code no_init(const gv_host_api*, gv_host_plugin*, gv_bytes, void** instance, gv_message_buffer) {
  *instance = nullptr;
  return GV_STATUS_OK;
}

gv_plugin_descriptor descriptor_of(const std::string& set, const gv_method_desc* method, const char* name) {
  gv_plugin_descriptor d{};
  d.struct_size = sizeof d;
  d.abi_major = GV_ABI_VERSION_MAJOR;
  d.abi_minor = GV_ABI_VERSION_MINOR;
  d.name = name;
  d.version = "1.0.0";
  d.descriptor_set = {reinterpret_cast<const uint8_t*>(set.data()), set.size()};
  d.methods = method;
  d.method_count = method != nullptr ? 1 : 0;
  d.on_init = no_init;
  d.on_call_start = [](void*, gv_call*, uint32_t, gv_bytes, void**) {};
  d.on_call_message = [](void*, gv_call*, void*, gv_bytes) {};
  d.on_call_half_close = [](void*, gv_call*, void*) {};
  d.on_shutdown = [](void*) {};
  d.method_desc_size = sizeof(gv_method_desc);
  d.config_key_desc_size = sizeof(gv_config_key_desc);
  return d;
}

// The echo example's generation, which a fuzzed one would replace on hot reload.
struct Reference {
  Reference() {
    spdlog::set_level(spdlog::level::off);
    std::ifstream in(GV_ECHO_DESCRIPTOR_SET, std::ios::binary);
    set.assign(std::istreambuf_iterator<char>(in), {});
    descriptor = descriptor_of(set, &method, "echo");
    gameverse::config::PluginConfig entry;
    entry.name = "echo";
    generation = plugin::Plugin::open_builtin(&descriptor, entry);
  }
  std::string set;
  gv_method_desc method{sizeof(gv_method_desc), "/gameverse.echo.v1.Echo/Echo", GV_CALL_UNARY, 0, "public"};
  gv_plugin_descriptor descriptor{};
  std::unique_ptr<plugin::Plugin> generation;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Reference reference;
  if (size < 2) return 0;
  const size_t name_size = std::min<size_t>(data[1], size - 2);
  const std::string name(reinterpret_cast<const char*>(data) + 2, name_size);
  const std::string set(reinterpret_cast<const char*>(data) + 2 + name_size, size - 2 - name_size);
  const gv_method_desc method{sizeof(gv_method_desc), name.c_str(),
                              static_cast<gv_call_kind>(data[0] % 4 + 1), 0, "public"};
  const gv_plugin_descriptor descriptor = descriptor_of(set, name.empty() ? nullptr : &method, "echo");
  gameverse::config::PluginConfig entry;
  entry.name = "echo";
  std::unique_ptr<plugin::Plugin> generation;
  try {
    generation = plugin::Plugin::open_builtin(&descriptor, entry);
  } catch (const plugin::LoadError&) {
    return 0;  // refused with a message: the common outcome
  }
  plugin::incompatible_routes(reference.generation->methods(), generation->methods());
  plugin::incompatible_routes(generation->methods(), reference.generation->methods());
  return 0;
}
