#include "scaffold.hpp"

#include <cctype>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <string_view>

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

// Names the generated code cannot use as its namespace: C++ keywords, and std.
constexpr std::string_view kReservedNames =
    " alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t"
    " class compl concept const consteval constexpr constinit const_cast continue co_await co_return"
    " co_yield decltype default delete do double dynamic_cast else enum explicit export extern false"
    " float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator"
    " or or_eq private protected public register reinterpret_cast requires return short signed sizeof"
    " static static_assert static_cast struct switch template this thread_local throw true try typedef"
    " typeid typename union unsigned using virtual void volatile wchar_t while xor xor_eq std ";

// The templates. @NAME@ is the plugin's name (my-mod), @IDENT@ its C++ namespace and proto
// package (my_mod), @SERVICE@ its service (MyMod). The result is formatted as clang-format would
// (.clang-format) for names of up to 13 characters; a longer one leaves a few lines long.

constexpr const char* kCMake = R"gv(cmake_minimum_required(VERSION 3.25)
project(@IDENT@ LANGUAGES C CXX)

set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
add_compile_options(-Wall -Wextra)

# An installed GameVerse (cmake -DCMAKE_PREFIX_PATH=<its install prefix>): the SDK,
# gameverse_add_plugin() and the host the tests run.
find_package(GameVerse REQUIRED)

# domain/: the rules in plain C++, with no SDK or protobuf, so they are tested without a host; from
# GameVerse it takes only the plain header of refusals (gameverse/domain_error.hpp).
# Position-independent: it is linked into the plugin, a shared library.
add_library(@IDENT@_domain STATIC domain/greeter.cpp)
target_include_directories(@IDENT@_domain PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(@IDENT@_domain PUBLIC GameVerse::sdk)
set_target_properties(@IDENT@_domain PROPERTIES POSITION_INDEPENDENT_CODE ON)

# The plugin, @NAME@.so: api/ (messages to domain calls, registration) and infrastructure/ (the
# repository over the host's store), with protobuf-lite code for the .proto.
gameverse_add_plugin(
  NAME @NAME@
  SOURCES api/@IDENT@_plugin.cpp infrastructure/store_greeting_counts.cpp
  PROTOS ${CMAKE_CURRENT_SOURCE_DIR}/proto/@IDENT@/v1/@IDENT@.proto
  PROTO_ROOT ${CMAKE_CURRENT_SOURCE_DIR}/proto)
target_link_libraries(@NAME@ PRIVATE @IDENT@_domain)

enable_testing()
find_package(GTest CONFIG REQUIRED)
include(GoogleTest)
add_subdirectory(tests)
)gv";

constexpr const char* kProto = R"gv(syntax = "proto3";

package @IDENT@.v1;

service @SERVICE@ {
  // Greets a player and says how many times they have been greeted.
  rpc Greet(GreetRequest) returns (GreetReply);
}

message GreetRequest {
  string player = 1;
}

message GreetReply {
  string message = 1;
  int64 times_greeted = 2;
}

// What the plugin stores per player, in its collection "greetings" keyed by the player's name.
message GreetingCountRecord {
  int64 count = 1;
}
)gv";

constexpr const char* kDomainRepository =
    R"gv(// What the greeter needs from storage: how many times each player has been greeted. The plugin keeps it in
// the host's store (infrastructure/), the domain tests in memory.
#pragma once

#include <cstdint>
#include <string>

namespace @IDENT@ {

struct GreetingCount {
  int64_t count = 0;
  int64_t version = 0;  // the stored version it was read at; 0: not stored yet
};

class GreetingCounts {
 public:
  virtual ~GreetingCounts() = default;
  // The player's count; {0, 0} before their first greeting.
  virtual GreetingCount find(const std::string& player) = 0;
  // Writes `count` only over the version it was read at (version 0: only if none is stored yet). Returns
  // false when another write came first.
  virtual bool save(const std::string& player, const GreetingCount& count) = 0;
};

}  // namespace @IDENT@
)gv";

constexpr const char* kDomainGreeterHeader =
    R"gv(// The rules: who can be greeted, what they are told, and that every greeting is counted once.
#pragma once

#include <gameverse/domain_error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "domain/greeting_counts.hpp"

namespace @IDENT@ {

// Refusals are gameverse::DomainError: its kind names the status the caller gets
// (sdk::answer in api/ maps it), its message what is wrong.
// A player name the rules refuse; the message says why.
class InvalidPlayer : public gameverse::DomainError {
 public:
  explicit InvalidPlayer(const std::string& message) : DomainError(Kind::kInvalidArgument, message) {}
};

// Other greetings of the same player kept winning the race to the store; worth trying again.
class TooBusy : public gameverse::DomainError {
 public:
  explicit TooBusy(const std::string& message) : DomainError(Kind::kAborted, message) {}
};

struct Greeting {
  std::string message;
  int64_t times_greeted = 0;
};

class Greeter {
 public:
  static constexpr size_t kMaxPlayerBytes = 64;

  Greeter(std::string greeting, GreetingCounts& counts) : greeting_(std::move(greeting)), counts_(counts) {}

  // Greets `player` and counts it. Throws InvalidPlayer for an empty name or one longer than kMaxPlayerBytes,
  // TooBusy when concurrent greetings of the player keep writing first.
  Greeting greet(const std::string& player);

 private:
  std::string greeting_;
  GreetingCounts& counts_;
};

}  // namespace @IDENT@
)gv";

constexpr const char* kDomainGreeter = R"gv(#include "domain/greeter.hpp"

namespace @IDENT@ {

Greeting Greeter::greet(const std::string& player) {
  if (player.empty()) throw InvalidPlayer("player must not be empty");
  if (player.size() > kMaxPlayerBytes) {
    throw InvalidPlayer("player must be at most " + std::to_string(kMaxPlayerBytes) + " bytes, not " +
                        std::to_string(player.size()));
  }
  // Read, add one, write over exactly what was read: two greetings at once never count as one.
  constexpr int kAttempts = 5;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    GreetingCount count = counts_.find(player);
    ++count.count;
    if (counts_.save(player, count)) return {greeting_ + ", " + player + "!", count.count};
  }
  throw TooBusy("greetings of '" + player + "' kept colliding; try again");
}

}  // namespace @IDENT@
)gv";

constexpr const char* kStoreRepositoryHeader =
    R"gv(// GreetingCounts over the host's document store: one GreetingCountRecord per player in the collection
// "greetings", keyed and owned by the player's name.
#pragma once

#include <gameverse/sdk/plugin.hpp>

#include "domain/greeting_counts.hpp"

namespace @IDENT@ {

class StoreGreetingCounts final : public GreetingCounts {
 public:
  static constexpr const char* kCollection = "greetings";

  explicit StoreGreetingCounts(gameverse::sdk::Store store) : store_(store) {}
  GreetingCount find(const std::string& player) override;
  bool save(const std::string& player, const GreetingCount& count) override;

 private:
  gameverse::sdk::Store store_;
};

}  // namespace @IDENT@
)gv";

constexpr const char* kStoreRepository = R"gv(#include "infrastructure/store_greeting_counts.hpp"

#include "@IDENT@/v1/@IDENT@.pb.h"

namespace @IDENT@ {

namespace sdk = gameverse::sdk;

GreetingCount StoreGreetingCounts::find(const std::string& player) {
  const auto record = store_.get<v1::GreetingCountRecord>(kCollection, player);
  if (!record) return {};
  return {record->value.count(), record->version};
}

bool StoreGreetingCounts::save(const std::string& player, const GreetingCount& count) {
  v1::GreetingCountRecord record;
  record.set_count(count.count);
  try {
    // Version 0 creates only (sdk::Store::kCreateOnly); any other writes only over that version.
    store_.put(kCollection, player, record, count.version, player);
    return true;
  } catch (const sdk::Error& e) {
    // Another greeting wrote first: ALREADY_EXISTS for a create, ABORTED for an update.
    if (e.code() == sdk::StatusCode::kAlreadyExists || e.code() == sdk::StatusCode::kAborted) return false;
    throw;
  }
}

}  // namespace @IDENT@
)gv";

constexpr const char* kPlugin =
    R"gv(// @IDENT@.v1.@SERVICE@, mapped onto the greeter. Load a build into a running host with
//   gvctl load @NAME@ --path build/@NAME@.so
#include <gameverse/sdk/domain_error.hpp>
#include <gameverse/sdk/plugin.hpp>

#include "@IDENT@/v1/@IDENT@.pb.h"

#include "domain/greeter.hpp"
#include "infrastructure/store_greeting_counts.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = @IDENT@::v1;

class @SERVICE@Plugin final : public sdk::Plugin {
 public:
  explicit @SERVICE@Plugin(sdk::InitContext& init)
      : counts_(init.host.store()), greeter_(init.host.config_string("greeting"), counts_) {}

  static void describe(sdk::PluginBuilder<@SERVICE@Plugin>& b) {
    // Greet waits on the store, so it runs on the host's pool (blocking, not unary). Anyone may call it; a
    // method without a policy is for signed-in callers only.
    b.service("@IDENT@.v1.@SERVICE@").blocking("Greet", &@SERVICE@Plugin::greet, sdk::kPublic);
    // The host checks the rule and names the file, line and column of a value that breaks it.
    b.config_string("greeting", "Hello", "What every greeting starts with", sdk::non_empty());
    b.collection(@IDENT@::StoreGreetingCounts::kCollection);
  }

  sdk::Status greet(sdk::CallContext&, const pb::GreetRequest& request, pb::GreetReply& reply) {
    // A refusal of the rules becomes its status (INVALID_ARGUMENT, ABORTED) with its message.
    return sdk::answer([&] {
      const @IDENT@::Greeting greeting = greeter_.greet(request.player());
      reply.set_message(greeting.message);
      reply.set_times_greeted(greeting.times_greeted);
    });
  }

 private:
  @IDENT@::StoreGreetingCounts counts_;
  @IDENT@::Greeter greeter_;
};

}  // namespace

GAMEVERSE_PLUGIN(@SERVICE@Plugin, "@NAME@", "0.1.0", "Greets players")
)gv";

constexpr const char* kTestsCMake = R"gv(# The domain on its own.
add_executable(@IDENT@_domain_tests greeter_test.cpp)
target_link_libraries(@IDENT@_domain_tests PRIVATE @IDENT@_domain GTest::gtest_main)
gtest_discover_tests(@IDENT@_domain_tests)

# The plugin in the installed host, through a gRPC client built from the same .proto with the full
# protobuf runtime and gRPC: a test may link them, a plugin never does.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
set(proto_root "${PROJECT_SOURCE_DIR}/proto")
set(client_dir "${CMAKE_CURRENT_BINARY_DIR}/client")
set(client_sources "${client_dir}/@IDENT@/v1/@IDENT@.pb.cc" "${client_dir}/@IDENT@/v1/@IDENT@.grpc.pb.cc")
file(MAKE_DIRECTORY "${client_dir}")
add_custom_command(
  OUTPUT ${client_sources}
  COMMAND protobuf::protoc "--proto_path=${proto_root}" "--cpp_out=${client_dir}" "--grpc_out=${client_dir}"
          "--plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>" "${proto_root}/@IDENT@/v1/@IDENT@.proto"
  DEPENDS "${proto_root}/@IDENT@/v1/@IDENT@.proto" protobuf::protoc gRPC::grpc_cpp_plugin
  VERBATIM)
add_executable(@IDENT@_host_tests @IDENT@_host_test.cpp ${client_sources})
target_include_directories(@IDENT@_host_tests PRIVATE "${client_dir}")
target_link_libraries(@IDENT@_host_tests PRIVATE gRPC::grpc++ protobuf::libprotobuf GTest::gtest_main)
target_compile_definitions(@IDENT@_host_tests PRIVATE
  GAMEVERSE_HOST="$<TARGET_FILE:GameVerse::gameverse>"
  PLUGIN_FILE="$<TARGET_FILE:@NAME@>")
add_dependencies(@IDENT@_host_tests @NAME@)
gtest_discover_tests(@IDENT@_host_tests)
)gv";

constexpr const char* kDomainTest = R"gv(// The rules on their own: an in-memory GreetingCounts, no host.
#include <gtest/gtest.h>

#include <map>

#include "domain/greeter.hpp"

namespace @IDENT@ {
namespace {

// Keeps counts in a map, with versions as the host's store keeps them. `lose_next_saves` makes that many
// saves lose a race, as when another greeting of the player writes first.
class InMemoryGreetingCounts final : public GreetingCounts {
 public:
  GreetingCount find(const std::string& player) override { return counts_[player]; }
  bool save(const std::string& player, const GreetingCount& count) override {
    GreetingCount& stored = counts_[player];
    if (lose_next_saves > 0) {
      --lose_next_saves;
      ++stored.count;
      ++stored.version;
      return false;
    }
    if (stored.version != count.version) return false;
    stored = {count.count, count.version + 1};
    return true;
  }
  int lose_next_saves = 0;

 private:
  std::map<std::string, GreetingCount> counts_;
};

TEST(Greeter, GreetsWithTheGreetingAndCountsEachPlayer) {
  InMemoryGreetingCounts counts;
  Greeter greeter("Welcome", counts);
  EXPECT_EQ(greeter.greet("ada").message, "Welcome, ada!");
  EXPECT_EQ(greeter.greet("ada").times_greeted, 2);
  EXPECT_EQ(greeter.greet("bob").times_greeted, 1);
}

TEST(Greeter, RefusesAnEmptyOrOverlongName) {
  InMemoryGreetingCounts counts;
  Greeter greeter("Hello", counts);
  EXPECT_THROW(greeter.greet(""), InvalidPlayer);
  EXPECT_THROW(greeter.greet(std::string(Greeter::kMaxPlayerBytes + 1, 'x')), InvalidPlayer);
  EXPECT_EQ(greeter.greet(std::string(Greeter::kMaxPlayerBytes, 'x')).times_greeted, 1);
}

TEST(Greeter, CountsAGreetingThatLostARaceOnTopOfTheWinner) {
  InMemoryGreetingCounts counts;
  Greeter greeter("Hello", counts);
  counts.lose_next_saves = 2;  // two other greetings of ada write first
  EXPECT_EQ(greeter.greet("ada").times_greeted, 3);
}

TEST(Greeter, GivesUpWhenEverySaveLoses) {
  InMemoryGreetingCounts counts;
  Greeter greeter("Hello", counts);
  counts.lose_next_saves = 1000;
  EXPECT_THROW(greeter.greet("ada"), TooBusy);
}

}  // namespace
}  // namespace @IDENT@
)gv";

constexpr const char* kHostTest =
    R"gv(// The plugin in a real host: the installed gameverse binary loads the plugin just built, and a gRPC client
// calls it on the port the host picked.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "@IDENT@/v1/@IDENT@.grpc.pb.h"

namespace {

namespace fs = std::filesystem;
namespace pb = @IDENT@::v1;

std::string read_file(const fs::path& path) {
  std::ostringstream text;
  text << std::ifstream(path).rdbuf();
  return text.str();
}

// A host process with the plugin loaded and its config table set to `plugin_config`, serving on 127.0.0.1 and
// a port it picks, its store in a fresh directory. Stopped with SIGTERM.
class Host {
 public:
  explicit Host(const std::string& plugin_config) {
    std::string dir = (fs::temp_directory_path() / "@NAME@-test-XXXXXX").string();
    if (mkdtemp(dir.data()) == nullptr) throw std::runtime_error("cannot make a directory in " + dir);
    dir_ = dir;
    const fs::path config = dir_ / "host.toml", port_file = dir_ / "port";
    {
      std::ofstream out(config);
      out << "[host]\nwatch = false\ndata_dir = \"" << dir_.string() << "\"\n";
      out << "[[plugin]]\nname = \"@NAME@\"\npath = \"" PLUGIN_FILE "\"\n";
      out << "[plugin.config]\n" << plugin_config << "\n";
    }
    pid_ = fork();
    if (pid_ == 0) {
      const int log = open((dir_ / "host.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
      execl(GAMEVERSE_HOST, GAMEVERSE_HOST, "--config", config.c_str(), "--listen", "127.0.0.1:0",
            "--port-file", port_file.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    // The host writes the port file once it serves, after loading its plugins.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!fs::exists(port_file)) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_ || std::chrono::steady_clock::now() > give_up) {
        const std::string why = "the host did not start serving:\n" + log();
        stop();
        throw std::runtime_error(why);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const std::string address = "127.0.0.1:" + std::to_string(std::stoi(read_file(port_file)));
    stub_ = pb::@SERVICE@::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }
  ~Host() { stop(); }

  grpc::Status greet(const std::string& player, pb::GreetReply* reply) const {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    pb::GreetRequest request;
    request.set_player(player);
    return stub_->Greet(&context, request, reply);
  }

  std::string log() const { return read_file(dir_ / "host.log"); }

 private:
  void stop() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    fs::remove_all(dir_);
  }

  fs::path dir_;
  pid_t pid_ = -1;
  std::unique_ptr<pb::@SERVICE@::Stub> stub_;
};

TEST(@SERVICE@InTheHost, GreetsWithTheConfiguredGreetingAndCounts) {
  Host host("greeting = \"Welcome\"");
  pb::GreetReply reply;
  grpc::Status status = host.greet("ada", &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.message(), "Welcome, ada!");
  EXPECT_EQ(reply.times_greeted(), 1);

  status = host.greet("ada", &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.times_greeted(), 2);  // read back from the host's store
}

TEST(@SERVICE@InTheHost, RefusesAnEmptyPlayer) {
  Host host("");
  pb::GreetReply reply;
  const grpc::Status status = host.greet("", &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "player must not be empty");
}

TEST(@SERVICE@InTheHost, IsNotLoadedWithAnEmptyGreeting) {
  Host host("greeting = \"\"");  // the host checks the rule the plugin declares, and serves on without it
  pb::GreetReply reply;
  EXPECT_EQ(host.greet("ada", &reply).error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_NE(host.log().find("greeting: must not be empty"), std::string::npos) << host.log();
}

}  // namespace
)gv";

constexpr const char* kReadme = R"gv(# @NAME@

A GameVerse plugin serving `@IDENT@.v1.@SERVICE@`.

    cmake -S . -B build -DCMAKE_PREFIX_PATH=<GameVerse install prefix>
    cmake --build build
    ctest --test-dir build                       # the domain alone, then the plugin in a real host
    gvctl load @NAME@ --path build/@NAME@.so     # into a running host whose plugin_dir holds it
    gvctl reload @NAME@                          # after a rebuild (or let the host's file watch do it)

The inside has the shape of every GameVerse service plugin:

    proto/@IDENT@/v1/@IDENT@.proto   the service, its messages and the stored record
    domain/                        the rules and the repository interface: no SDK, no protobuf
    infrastructure/                the repository over the host's store
    api/@IDENT@_plugin.cpp          messages to domain calls; the service, config and collection, declared once
    tests/                         the domain on an in-memory repository; the plugin in the installed host

The tests need GoogleTest and gRPC for C++ (Debian: `libgtest-dev libgrpc++-dev protobuf-compiler-grpc`).
)gv";

constexpr const char* kGitignore = R"gv(build/
)gv";

struct TemplateFile {
  const char* path;
  const char* text;
};

constexpr TemplateFile kFiles[] = {
    {"CMakeLists.txt", kCMake},
    {"proto/@IDENT@/v1/@IDENT@.proto", kProto},
    {"domain/greeting_counts.hpp", kDomainRepository},
    {"domain/greeter.hpp", kDomainGreeterHeader},
    {"domain/greeter.cpp", kDomainGreeter},
    {"infrastructure/store_greeting_counts.hpp", kStoreRepositoryHeader},
    {"infrastructure/store_greeting_counts.cpp", kStoreRepository},
    {"api/@IDENT@_plugin.cpp", kPlugin},
    {"tests/CMakeLists.txt", kTestsCMake},
    {"tests/greeter_test.cpp", kDomainTest},
    {"tests/@IDENT@_host_test.cpp", kHostTest},
    {"README.md", kReadme},
    {".gitignore", kGitignore},
};

}  // namespace

std::filesystem::path scaffold(const std::string& name, const std::filesystem::path& directory) {
  if (!std::regex_match(name, std::regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$")) || name.size() > 63) {
    throw std::runtime_error("'" + name +
                             "' is not a plugin name: use lower-case words of letters and digits joined by "
                             "single '-', starting with a letter, at most 63 characters");
  }
  const std::string ident = replace_all(name, "-", "_");
  if (kReservedNames.find(" " + ident + " ") != std::string_view::npos) {
    throw std::runtime_error("'" + name + "' cannot be a plugin name: '" + ident +
                             "' is reserved in C++ and the plugin's code uses it as its namespace");
  }
  const std::filesystem::path root = directory / name;
  if (std::filesystem::exists(root))
    throw std::runtime_error(root.string() + " already exists; choose another name or directory");
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
  for (const TemplateFile& file : kFiles) write(root / fill(file.path), fill(file.text));
  return root;
}

}  // namespace gameverse::gvctl
