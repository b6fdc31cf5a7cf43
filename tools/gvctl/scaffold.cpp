#include "scaffold.hpp"

#include <fstream>
#include <regex>
#include <stdexcept>

namespace gameverse::gvctl {

namespace {

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// @NAME@ my-mod, @IDENT@ my_mod, @SERVICE@ MyMod.
const char* kProto = R"(syntax = "proto3";

package @IDENT@.v1;

service @SERVICE@ {
  // Says hello to a player.
  rpc Hello(HelloRequest) returns (HelloReply);
}

message HelloRequest {
  string name = 1;
}

message HelloReply {
  string message = 1;
}
)";

const char* kPlugin = R"(// The @NAME@ plugin. Build it with CMake, load it into a running host with
//   gvctl load @NAME@ --path build/@NAME@.so
#include <gameverse/sdk/plugin.hpp>

#include "@IDENT@/v1/@IDENT@.pb.h"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = @IDENT@::v1;

class Plugin final : public sdk::Plugin {
 public:
  explicit Plugin(sdk::InitContext& init) : greeting_(init.host.config_string("greeting")) {
    init.host.info("@NAME@ ready");
  }

  static void describe(sdk::PluginBuilder<Plugin>& b) {
    b.unary("/@IDENT@.v1.@SERVICE@/Hello", &Plugin::hello)
        .access("/@IDENT@.v1.@SERVICE@/Hello", sdk::kPublic)  // anyone may call it; the default is signed-in callers
        .config_string("greeting", "Hello", "What a greeting starts with");
  }

  sdk::Status hello(sdk::CallContext&, const pb::HelloRequest& request, pb::HelloReply& reply) {
    if (request.name().empty()) return {sdk::StatusCode::kInvalidArgument, "name must not be empty"};
    reply.set_message(greeting_ + ", " + request.name() + "!");
    return sdk::Status::ok();
  }

 private:
  std::string greeting_;
};

}  // namespace

GAMEVERSE_PLUGIN(Plugin, "@NAME@", "0.1.0", "@SERVICE@ for GameVerse")
)";

const char* kCMake = R"(cmake_minimum_required(VERSION 3.25)
project(@IDENT@ LANGUAGES C CXX)

set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)

# An installed GameVerse: cmake -DCMAKE_PREFIX_PATH=<its install prefix>
find_package(GameVerse REQUIRED)

gameverse_add_plugin(
  NAME @NAME@
  SOURCES src/@IDENT@_plugin.cpp
  PROTOS ${CMAKE_CURRENT_SOURCE_DIR}/proto/@IDENT@/v1/@IDENT@.proto
  PROTO_ROOT ${CMAKE_CURRENT_SOURCE_DIR}/proto)

# The test: a real host loads the plugin and checks its ABI, routes and config table.
enable_testing()
file(GENERATE OUTPUT ${CMAKE_CURRENT_BINARY_DIR}/check.toml CONTENT
"[admin]
enabled = false
[[plugin]]
name = \"@NAME@\"
path = \"$<TARGET_FILE:@NAME@>\"
")
add_test(NAME @IDENT@_loads_into_a_host
  COMMAND GameVerse::gameverse --check --config ${CMAKE_CURRENT_BINARY_DIR}/check.toml)
)";

const char* kReadme = R"(# @NAME@

A GameVerse plugin serving `@IDENT@.v1.@SERVICE@`.

    cmake -S . -B build -DCMAKE_PREFIX_PATH=<GameVerse install prefix>
    cmake --build build
    ctest --test-dir build                       # a real host loads the plugin
    gvctl load @NAME@ --path build/@NAME@.so     # into a running host
    gvctl reload @NAME@                          # after a rebuild (or let the host's file watch do it)

Edit `proto/@IDENT@/v1/@IDENT@.proto` and `src/@IDENT@_plugin.cpp`; every method is one line in
`describe()`.
)";

}  // namespace

std::filesystem::path scaffold(const std::string& name, const std::filesystem::path& directory) {
  if (!std::regex_match(name, std::regex("^[a-z][a-z0-9-]{0,62}$"))) {
    throw std::runtime_error(
        "'" + name +
        "' is not a plugin name: use lower-case letters, digits and '-', starting with a letter");
  }
  const std::filesystem::path root = directory / name;
  if (std::filesystem::exists(root))
    throw std::runtime_error(root.string() + " already exists; choose another name or directory");
  const std::string ident = replace_all(name, "-", "_");
  std::string service;
  bool upper = true;
  for (char c : name) {
    if (c == '-') {
      upper = true;
      continue;
    }
    service += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  auto fill = [&](const char* text) {
    return replace_all(replace_all(replace_all(text, "@NAME@", name), "@IDENT@", ident), "@SERVICE@",
                       service);
  };
  write(root / "proto" / ident / "v1" / (ident + ".proto"), fill(kProto));
  write(root / "src" / (ident + "_plugin.cpp"), fill(kPlugin));
  write(root / "CMakeLists.txt", fill(kCMake));
  write(root / "README.md", fill(kReadme));
  return root;
}

}  // namespace gameverse::gvctl
