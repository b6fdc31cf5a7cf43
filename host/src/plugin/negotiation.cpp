#include "plugin/negotiation.hpp"

#include <cstring>

namespace gameverse::plugin {

namespace {

std::string version(uint32_t major, uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}

bool any_streaming_requests(const gv_plugin_descriptor& d, size_t method_desc_size) {
  for (size_t i = 0; i < d.method_count; ++i) {
    const gv_call_kind kind = table_entry<gv_method_desc>(d.methods, method_desc_size, i).call_kind;
    if (kind == GV_CALL_CLIENT_STREAMING || kind == GV_CALL_BIDI_STREAMING) return true;
  }
  return false;
}

}  // namespace

std::variant<Negotiated, std::string> negotiate(const gv_plugin_descriptor& d, const HostAbi& host) {
  if (d.struct_size < kDescriptorSizeV1_0) {
    return "descriptor struct_size is " + std::to_string(d.struct_size) + " bytes, smaller than the " +
           std::to_string(kDescriptorSizeV1_0) +
           " bytes of ABI 1.0: the plugin is corrupt or not built with gameverse/abi.h";
  }
  if (d.abi_major != host.major) {
    return "plugin was built for ABI " + version(d.abi_major, d.abi_minor) + ", this host speaks ABI " +
           version(host.major, host.minor) + ": rebuild the plugin against this host's SDK";
  }
  if (d.struct_size > host.descriptor_size) {
    // Fields this host does not know: harmless when unset, a refusal when the plugin uses them.
    const auto* tail = reinterpret_cast<const unsigned char*>(&d) + host.descriptor_size;
    for (size_t i = 0; i < d.struct_size - host.descriptor_size; ++i) {
      if (tail[i] != 0) {
        return "descriptor struct_size is " + std::to_string(d.struct_size) + " bytes, larger than the " +
               std::to_string(host.descriptor_size) + " bytes this host (ABI " +
               version(host.major, host.minor) + ") knows, and the plugin (ABI " +
               version(d.abi_major, d.abi_minor) + ") sets fields beyond them: it needs a newer host";
      }
    }
  }
  Negotiated negotiated{d.abi_minor < host.minor ? d.abi_minor : host.minor};
  if (d.abi_minor >= 2) {
    // From 1.2 on the plugin says how far apart its table entries are.
    if (d.struct_size < offsetof(gv_plugin_descriptor, config_key_desc_size) + sizeof(size_t)) {
      return "descriptor says ABI " + version(d.abi_major, d.abi_minor) + " but its struct_size " +
             std::to_string(d.struct_size) +
             " does not reach the 1.2 fields method_desc_size and "
             "config_key_desc_size";
    }
    if (d.method_count > 0 && d.method_desc_size < kMethodDescSizeV1_0) {
      return "descriptor says ABI " + version(d.abi_major, d.abi_minor) + " but its method_desc_size is " +
             std::to_string(d.method_desc_size) + "; set it to sizeof(gv_method_desc)";
    }
    if (d.config_key_count > 0 && d.config_key_desc_size < kConfigKeyDescSizeV1_0) {
      return "descriptor says ABI " + version(d.abi_major, d.abi_minor) +
             " but its config_key_desc_size is " + std::to_string(d.config_key_desc_size) +
             "; set it to sizeof(gv_config_key_desc)";
    }
    if (d.method_count > 0) negotiated.method_desc_size = d.method_desc_size;
    if (d.config_key_count > 0) negotiated.config_key_desc_size = d.config_key_desc_size;
  }
  if (d.name == nullptr || *d.name == '\0') return "descriptor has no name";
  if (d.version == nullptr || *d.version == '\0') return "descriptor has no version";
  if (d.method_count > 0 && d.methods == nullptr) return "descriptor lists methods but no method table";
  if (d.config_key_count > 0 && d.config_keys == nullptr) {
    return "descriptor lists config keys but no key table";
  }
  if (d.dependency_count > 0 && d.dependencies == nullptr) {
    return "descriptor lists dependencies but no dependency table";
  }
  if (d.on_init == nullptr) return "descriptor has no on_init hook";
  if (d.on_shutdown == nullptr) return "descriptor has no on_shutdown hook";
  if (d.method_count > 0 && d.on_call_start == nullptr) return "descriptor has no on_call_start hook";
  for (size_t i = 0; i < d.method_count; ++i) {
    const auto* entry = reinterpret_cast<const unsigned char*>(d.methods) + i * negotiated.method_desc_size;
    size_t struct_size = 0;
    std::memcpy(&struct_size, entry, sizeof struct_size);
    if (struct_size < kMethodDescSizeV1_0) {
      return "method #" + std::to_string(i) + " has struct_size " + std::to_string(struct_size) +
             ", smaller than the " + std::to_string(kMethodDescSizeV1_0) + " bytes of ABI 1.0";
    }
  }
  if (any_streaming_requests(d, negotiated.method_desc_size) &&
      (d.on_call_message == nullptr || d.on_call_half_close == nullptr)) {
    return "descriptor has client-streaming or bidi methods but no on_call_message / "
           "on_call_half_close hook";
  }
  return negotiated;
}

uint32_t entry_symbol_major(const std::string& symbol) {
  static constexpr std::string_view prefix = "gv_plugin_entry_v";
  if (symbol.rfind(prefix, 0) != 0 || symbol.size() == prefix.size() || symbol.size() > prefix.size() + 9) {
    return 0;
  }
  uint32_t major = 0;
  for (size_t i = prefix.size(); i < symbol.size(); ++i) {
    if (symbol[i] < '0' || symbol[i] > '9') return 0;
    major = major * 10 + static_cast<uint32_t>(symbol[i] - '0');
  }
  return major;
}

}  // namespace gameverse::plugin
