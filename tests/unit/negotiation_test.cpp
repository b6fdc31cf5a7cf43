#include "plugin/negotiation.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace gameverse::plugin {
namespace {

gv_status_code init(const gv_host_api*, gv_host_plugin*, gv_bytes, void**, gv_message_buffer) {
  return GV_STATUS_OK;
}
void start(void*, gv_call*, uint32_t, gv_bytes, void**) {}
void shutdown(void*) {}

const gv_method_desc kUnary[] = {{sizeof(gv_method_desc), "/a.B/C", GV_CALL_UNARY, 0, nullptr}};
const gv_method_desc kBidi[] = {{sizeof(gv_method_desc), "/a.B/D", GV_CALL_BIDI_STREAMING, 0, nullptr}};

gv_plugin_descriptor valid() {
  gv_plugin_descriptor d;
  std::memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  d.abi_major = 1;
  d.abi_minor = 0;
  d.name = "p";
  d.version = "1.0.0";
  d.methods = kUnary;
  d.method_count = 1;
  d.on_init = init;
  d.on_call_start = start;
  d.on_shutdown = shutdown;
  d.method_desc_size = sizeof(gv_method_desc);
  d.config_key_desc_size = sizeof(gv_config_key_desc);
  return d;
}

std::string refusal(const gv_plugin_descriptor& d, HostAbi host = {}) {
  auto result = negotiate(d, host);
  const std::string* message = std::get_if<std::string>(&result);
  return message ? *message : "";
}

TEST(Negotiation, ValidDescriptorIsAccepted) {
  auto result = negotiate(valid());
  ASSERT_TRUE(std::holds_alternative<Negotiated>(result)) << std::get<std::string>(result);
  EXPECT_EQ(std::get<Negotiated>(result).minor, 0u);
}

TEST(Negotiation, MinorInForceIsTheSmaller) {
  gv_plugin_descriptor d = valid();
  d.abi_minor = 3;
  EXPECT_EQ(std::get<Negotiated>(negotiate(d, {1, 5, sizeof d})).minor, 3u);
  EXPECT_EQ(std::get<Negotiated>(negotiate(d, {1, 2, sizeof d})).minor, 2u);
}

TEST(Negotiation, MajorMismatchNamesBothVersions) {
  gv_plugin_descriptor d = valid();
  d.abi_major = 2;
  d.abi_minor = 4;
  const std::string message = refusal(d, {1, 7, sizeof d});
  EXPECT_NE(message.find("built for ABI 2.4"), std::string::npos) << message;
  EXPECT_NE(message.find("this host speaks ABI 1.7"), std::string::npos) << message;
}

TEST(Negotiation, TooSmallStructIsRefused) {
  gv_plugin_descriptor d = valid();
  d.struct_size = 16;
  EXPECT_NE(refusal(d).find("smaller than"), std::string::npos);
}

// A plugin from a newer minor hands a bigger struct: fine while the unknown tail is zero.
TEST(Negotiation, LargerStructWithUnsetTailIsAccepted) {
  struct {
    gv_plugin_descriptor d;
    void* extra;
  } newer{};
  newer.d = valid();
  newer.d.struct_size = sizeof newer;
  newer.d.abi_minor = 1;
  newer.extra = nullptr;
  auto result = negotiate(newer.d, {1, 0, sizeof(gv_plugin_descriptor)});
  ASSERT_TRUE(std::holds_alternative<Negotiated>(result)) << std::get<std::string>(result);
  EXPECT_EQ(std::get<Negotiated>(result).minor, 0u);
}

TEST(Negotiation, LargerStructWithSetTailIsRefused) {
  struct {
    gv_plugin_descriptor d;
    void* extra;
  } newer{};
  newer.d = valid();
  newer.d.struct_size = sizeof newer;
  newer.d.abi_minor = 1;
  newer.extra = &newer;
  const std::string message = refusal(newer.d, {1, 0, sizeof(gv_plugin_descriptor)});
  EXPECT_NE(message.find("larger than"), std::string::npos) << message;
  EXPECT_NE(message.find("needs a newer host"), std::string::npos) << message;
}

TEST(Negotiation, MissingRequiredFieldsAreNamed) {
  gv_plugin_descriptor d = valid();
  d.name = nullptr;
  EXPECT_EQ(refusal(d), "descriptor has no name");
  d = valid();
  d.on_init = nullptr;
  EXPECT_EQ(refusal(d), "descriptor has no on_init hook");
  d = valid();
  d.on_shutdown = nullptr;
  EXPECT_EQ(refusal(d), "descriptor has no on_shutdown hook");
  d = valid();
  d.methods = nullptr;
  EXPECT_EQ(refusal(d), "descriptor lists methods but no method table");
}

TEST(Negotiation, StreamingRequestsNeedMessageHooks) {
  gv_plugin_descriptor d = valid();
  d.methods = kBidi;
  EXPECT_NE(refusal(d).find("on_call_message"), std::string::npos);
}

TEST(Negotiation, EntrySymbolMajor) {
  EXPECT_EQ(entry_symbol_major("gv_plugin_entry_v1"), 1u);
  EXPECT_EQ(entry_symbol_major("gv_plugin_entry_v12"), 12u);
  EXPECT_EQ(entry_symbol_major("gv_plugin_entry_v"), 0u);
  EXPECT_EQ(entry_symbol_major("gv_plugin_entry_vx"), 0u);
  EXPECT_EQ(entry_symbol_major("main"), 0u);
}

}  // namespace
}  // namespace gameverse::plugin
