// ABI negotiation: whether a plugin's descriptor can be used by this host, and at which minor.
#pragma once

#include <gameverse/abi.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <variant>

namespace gameverse::plugin {

// The size of gv_plugin_descriptor in ABI 1.0. It never changes: later minors append fields,
// and a plugin built against 1.0 hands the host a struct of exactly this size.
inline constexpr size_t kDescriptorSizeV1_0 = offsetof(gv_plugin_descriptor, method_access);

// The sizes of a method and a config key entry in ABI 1.0, which a plugin before 1.2 steps its
// tables by; from 1.2 on the descriptor says (method_desc_size, config_key_desc_size).
inline constexpr size_t kMethodDescSizeV1_0 = offsetof(gv_method_desc, access);
inline constexpr size_t kConfigKeyDescSizeV1_0 = offsetof(gv_config_key_desc, rules);

struct HostAbi {
  uint32_t major = GV_ABI_VERSION_MAJOR;
  uint32_t minor = GV_ABI_VERSION_MINOR;
  size_t descriptor_size = sizeof(gv_plugin_descriptor);  // what this host knows
};

struct Negotiated {
  uint32_t minor;                                 // the minor in force: min(host, plugin)
  size_t method_desc_size = kMethodDescSizeV1_0;  // the plugin's entry sizes
  size_t config_key_desc_size = kConfigKeyDescSizeV1_0;
};

// Entry `index` of a plugin's table whose entries are `entry_size` bytes apart, as this host's
// struct: fields beyond what the entry holds (its struct_size, the table's entry size) are zero.
template <class T>
T table_entry(const void* table, size_t entry_size, size_t index) {
  T out{};
  const auto* entry = static_cast<const unsigned char*>(table) + index * entry_size;
  size_t struct_size = 0;
  std::memcpy(&struct_size, entry, sizeof struct_size);
  std::memcpy(&out, entry, std::min({sizeof(T), entry_size, struct_size}));
  return out;
}

// Checks the descriptor's size and versions and that its required fields are set. Returns the
// minor in force or a message that names both versions (or the field at fault).
std::variant<Negotiated, std::string> negotiate(const gv_plugin_descriptor& descriptor,
                                                const HostAbi& host = {});

// The ABI major a plugin was built for, read from an exported gv_plugin_entry_v<N> symbol
// name; 0 when the name is not an entry symbol.
uint32_t entry_symbol_major(const std::string& symbol);

}  // namespace gameverse::plugin
