// ABI negotiation: whether a plugin's descriptor can be used by this host, and at which minor.
#pragma once

#include <gameverse/abi.h>

#include <cstdint>
#include <string>
#include <variant>

namespace gameverse::plugin {

// The size of gv_plugin_descriptor in ABI 1.0. It never changes: later minors append fields,
// and a plugin built against 1.0 hands the host a struct of exactly this size.
inline constexpr size_t kDescriptorSizeV1_0 = offsetof(gv_plugin_descriptor, method_access);

struct HostAbi {
  uint32_t major = GV_ABI_VERSION_MAJOR;
  uint32_t minor = GV_ABI_VERSION_MINOR;
  size_t descriptor_size = sizeof(gv_plugin_descriptor);  // what this host knows
};

struct Negotiated {
  uint32_t minor;  // the minor in force: min(host, plugin)
};

// Checks the descriptor's size and versions and that its required fields are set. Returns the
// minor in force or a message that names both versions (or the field at fault).
std::variant<Negotiated, std::string> negotiate(const gv_plugin_descriptor& descriptor,
                                                const HostAbi& host = {});

// The ABI major a plugin was built for, read from an exported gv_plugin_entry_v<N> symbol
// name; 0 when the name is not an entry symbol.
uint32_t entry_symbol_major(const std::string& symbol);

}  // namespace gameverse::plugin
