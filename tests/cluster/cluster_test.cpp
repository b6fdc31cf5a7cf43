// Services across hosts: a plugin's call to a service another host serves is forwarded there over
// gRPC with its caller, origin, request id and deadline; the hosts find each other through the
// config's [[remote]] list or the registry in Redis; a client cannot pose as a host.
#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <optional>
#include <random>
#include <thread>

#include "certificates.hpp"
#include "config/config.hpp"
#include "expect_contains.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "gameverse/platformprobe/v1/platform_probe.grpc.pb.h"
#include "host_process.hpp"
#include "platform/cluster_auth.hpp"
#include "platform/remote_calls.hpp"
#include "run_command.hpp"
#include "sign_up.hpp"
#include "test_servers.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::platformprobe::v1;
namespace echo = gameverse::echo::v1;
using std::chrono::milliseconds;

std::string random_hex(size_t bytes) {
  std::random_device random;
  std::string out;
  static const char* digits = "0123456789abcdef";
  for (size_t i = 0; i < bytes; ++i) {
    const unsigned value = random() & 0xff;
    out += digits[value >> 4];
    out += digits[value & 0xf];
  }
  return out;
}

std::string plugin(const std::string& name, const std::string& extra = "") {
  const std::string dir = name == "platform-probe" ? GV_PROBE_DIR : GV_PLUGIN_DIR;
  return "[[plugin]]\nname = \"" + name + "\"\npath = \"" + dir + "/" + name + ".so\"\n" + extra;
}

// echo with two methods closed at its own host's gate: WhoAmI to signed-in callers, Stats to moderators.
std::string guarded_echo() {
  return plugin("echo",
                "[plugin.access]\n\"/gameverse.echo.v1.Echo/WhoAmI\" = \"authenticated\"\n"
                "\"/gameverse.echo.v1.Echo/Stats\" = \"role:moderator\"\n");
}

std::string host_config(const TempDir& data, const std::string& cluster, const std::string& rest) {
  return "[host]\nwatch = false\nship_logs = false\ndata_dir = \"" + data.path().string() +
         "\"\n[admin]\nallow_loopback = true\n[cluster]\n" + cluster + rest;
}

struct Relayed {
  grpc::Status status;
  std::string response;
};

// The probe on `host` calls `method` in process: naming the handler's caller (Relay), or from a
// blocking handler with its own trust (as_plugin).
Relayed relay(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
              const std::string& request, const std::string& token = "", bool as_plugin = false,
              uint32_t timeout_ms = 0, const std::string& request_id = "") {
  auto probe = pb::PlatformProbe::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
  if (!request_id.empty()) context.AddMetadata("x-request-id", request_id);
  pb::RelayRequest relay;
  relay.set_method(method);
  relay.set_request(request);
  relay.set_timeout_ms(timeout_ms);
  relay.set_as_plugin(as_plugin);
  pb::RelayReply reply;
  Relayed out;
  out.status =
      as_plugin ? probe->RelayBlocking(&context, relay, &reply) : probe->Relay(&context, relay, &reply);
  out.response = reply.response();
  return out;
}

Relayed relay(const HostProcess& host, const std::string& method, const std::string& request,
              const std::string& token = "", bool as_plugin = false, uint32_t timeout_ms = 0,
              const std::string& request_id = "") {
  return relay(host.channel(), method, request, token, as_plugin, timeout_ms, request_id);
}

gameverse::host::v1::ListRemotesResponse remotes_of(const HostProcess& host) {
  auto admin = gameverse::host::v1::PluginAdmin::NewStub(host.channel());
  grpc::ClientContext context;
  gameverse::host::v1::ListRemotesResponse response;
  const grpc::Status status = admin->ListRemotes(&context, {}, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

// The addresses `service` resolves to on `host`, sorted.
std::vector<std::string> resolved(const HostProcess& host, const std::string& service) {
  std::vector<std::string> out;
  const auto remotes = remotes_of(host);
  for (const auto& s : remotes.services()) {
    if (s.service() != service) continue;
    for (const auto& e : s.endpoints()) out.push_back(e.address());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ClusterConfig, RemoteEntriesAreCheckedWithTheKeyAndLine) {
  const std::string secret = "secret = \"" + random_hex(32) + "\"\n";
  auto errors_of = [](const std::string& text) {
    std::string all;
    for (const auto& e : config::parse_config(text, "t.toml", "/tmp").errors) all += e.to_string() + "\n";
    return all;
  };
  EXPECT_EQ(errors_of("[cluster]\n" + secret +
                      "[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\n"
                      "addresses = [\"127.0.0.1:5000\", \"b.example:6000\"]\n"),
            "");
  EXPECT_CONTAINS(
      errors_of("[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\naddresses = [\"127.0.0.1:5000\"]\n"),
      "t.toml:1:1: cluster.secret: [[remote]] needs [cluster] secret or secret_file");
  EXPECT_CONTAINS(
      errors_of("[cluster]\n" + secret + "[[remote]]\nservice = \"echo\"\naddresses = [\"h:1\"]\n"),
      "t.toml:4:11: remote[0].service: 'echo' is not a full service name (package.Service)");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret +
                            "[[remote]]\nservice = \"a.B\"\naddresses = [\"h:0\", \"nohost\"]\n"),
                  "t.toml:5:14: remote[0].addresses: 'h:0' is not host:port (a port other than 0)");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret +
                            "[[remote]]\nservice = \"a.B\"\naddresses = [\"h:0\", \"nohost\"]\n"),
                  "remote[0].addresses: 'nohost' is not host:port");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "[[remote]]\nservice = \"a.B\"\naddresses = []\n"),
                  "t.toml:5:13: remote[0].addresses: needs at least one \"host:port\"");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret +
                            "[[remote]]\nservice = \"a.B\"\naddresses = [\"h:1\"]\n"
                            "[[remote]]\nservice = \"a.B\"\naddresses = [\"h:2\"]\n"),
                  "t.toml:7:11: remote[1].service: 'a.B' is listed already, at line 4");
  EXPECT_CONTAINS(errors_of("[cluster]\nsecret = \"short\"\n"),
                  "t.toml:2:10: cluster.secret: must be at least 32 characters");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "registry = true\n"),
                  "cluster.registry: needs [redis] url");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "lease_ms = 5\n"),
                  "cluster.lease_ms: must be between 1000 and 3600000, not 5");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "call_timeout_ms = 5\n"),
                  "cluster.call_timeout_ms: must be between 100 and 3600000, not 5");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "[[remote]]\nservice = \"a.B\"\nadresses = [\"h:1\"]\n"),
                  "remote[0].adresses: unknown key");
}

// Host B serves echo; host A serves auth and the probe and finds echo at B through [[remote]].
class TwoHosts : public ::testing::Test {
 protected:
  void SetUp() override {
    b_ = std::make_unique<HostProcess>(host_config(data_b_, secret_, "") + guarded_echo());
    a_ = std::make_unique<HostProcess>(
        host_config(
            data_a_, secret_,
            "[server]\ndrain_timeout_ms = 1000\n"
            "[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\naddresses = [\"" +
                b_->address() +
                "\"]\n"
                "[[remote]]\nservice = \"gameverse.nowhere.v1.Nowhere\"\naddresses = [\"127.0.0.1:1\"]\n") +
        plugin("auth", "[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n") +
        plugin("platform-probe"));
  }

  std::string sign_up(const std::string& name) {
    auto auth = gameverse::auth::v1::Auth::NewStub(a_->channel());
    grpc::ClientContext context;
    gameverse::auth::v1::RegisterRequest request;
    request.set_username(name);
    request.set_password("correct horse");
    gameverse::auth::v1::Session session;
    const grpc::Status status = auth->Register(&context, request, &session);
    EXPECT_TRUE(status.ok()) << status.error_message();
    user_id_ = session.account().id();
    return session.access_token();
  }

  // A secret with bytes that may not go into metadata: only MACs made with it travel.
  std::string key_ = "\x01\x7f" + random_hex(32);
  std::string secret_ = "secret = \"\\u0001\\u007f" + key_.substr(2) + "\"\n";
  TempDir data_a_, data_b_;
  std::unique_ptr<HostProcess> b_, a_;
  std::string user_id_;
};

TEST_F(TwoHosts, ACallCrossesHostsWithItsCallerOriginAndRequestId) {
  const std::string who = echo::WhoAmIRequest().SerializeAsString();
  // Anonymous: B's gate refuses WhoAmI, as a local call's would.
  const Relayed anonymous = relay(*a_, "/gameverse.echo.v1.Echo/WhoAmI", who);
  EXPECT_EQ(anonymous.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << anonymous.status.error_message();
  EXPECT_EQ(
      anonymous.status.error_message(),
      "method /gameverse.echo.v1.Echo/WhoAmI needs a signed-in caller, and the call forwarded to this host "
      "has none");

  const std::string token = sign_up("ada");
  const Relayed signed_in = relay(*a_, "/gameverse.echo.v1.Echo/WhoAmI", who, token);
  ASSERT_TRUE(signed_in.status.ok()) << signed_in.status.error_message() << "\n" << a_->log();
  echo::WhoAmIReply me;
  ASSERT_TRUE(me.ParseFromString(signed_in.response));
  EXPECT_EQ(me.user_id(), user_id_) << "the caller did not travel to the other host";
  EXPECT_FALSE(me.session_id().empty());
  EXPECT_EQ(std::vector<std::string>(me.roles().begin(), me.roles().end()),
            std::vector<std::string>{"player"});
  EXPECT_EQ(me.calling_plugin(), "platform-probe");
  EXPECT_EQ(me.plugin_with_own_trust(), "") << "a call for a caller arrived as the plugin's own";
  // The peer is the caller's on A; the host that forwarded the call is named beside it.
  EXPECT_EQ(me.peer(), "inproc:platform-probe");
  EXPECT_EQ(me.forwarded_by(), a_->address());

  // B's policy applies to the forwarded caller's roles.
  const Relayed player =
      relay(*a_, "/gameverse.echo.v1.Echo/Stats", echo::StatsRequest().SerializeAsString(), token);
  EXPECT_EQ(player.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(player.status.error_message(),
            "method /gameverse.echo.v1.Echo/Stats needs the role 'moderator'; the caller has: player");

  // The plugin's own call keeps its own trust, and gains no caller.
  const Relayed own = relay(*a_, "/gameverse.echo.v1.Echo/WhoAmI", who, token, /*as_plugin=*/true);
  ASSERT_TRUE(own.status.ok()) << own.status.error_message();
  ASSERT_TRUE(me.ParseFromString(own.response));
  EXPECT_EQ(me.user_id(), "");
  EXPECT_EQ(me.plugin_with_own_trust(), "platform-probe");

  // The request id survives the hop.
  echo::RequestIdRequest id_request;
  const Relayed id = relay(*a_, "/gameverse.echo.v1.Echo/RequestId", id_request.SerializeAsString(), "",
                           false, 0, "trace-across-hosts-1");
  ASSERT_TRUE(id.status.ok()) << id.status.error_message();
  echo::RequestIdReply id_reply;
  ASSERT_TRUE(id_reply.ParseFromString(id.response));
  EXPECT_EQ(id_reply.request_id(), "trace-across-hosts-1");

  // A service no host serves, and one whose only host does not answer: UNAVAILABLE naming it.
  const Relayed unknown = relay(*a_, "/gameverse.inventory.v1.Inventory/GetInventory", "");
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_CONTAINS(unknown.status.error_message(), "no host serves gameverse.inventory.v1.Inventory");
  const Relayed silent = relay(*a_, "/gameverse.nowhere.v1.Nowhere/Get", "");
  EXPECT_EQ(silent.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_CONTAINS(silent.status.error_message(), "gameverse.nowhere.v1.Nowhere");

  // gvctl shows where each remote service resolves.
  const CommandRun shown =
      run_command(std::string(GV_GVCTL_BINARY) + " --addr " + a_->address() + " remotes");
  EXPECT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_CONTAINS(shown.output, "this host: " + a_->address());
  EXPECT_CONTAINS(shown.output, "gameverse.echo.v1.Echo\n  " + b_->address() + "  static  ready");
  EXPECT_CONTAINS(shown.output, "gameverse.nowhere.v1.Nowhere\n  127.0.0.1:1  static  ");
  EXPECT_EQ(a_->stop(), 0) << a_->log();
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

TEST_F(TwoHosts, ADeadlineShorterThanTheRemoteWorkOrACancelEndsTheCall) {
  echo::SleepRequest sleep;
  sleep.set_duration_ms(5000);
  const Relayed late = relay(*a_, "/gameverse.echo.v1.Echo/Sleep", sleep.SerializeAsString(), "", false, 100);
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << late.status.error_message();

  // A client that gives up cancels the forwarded call too: it does not wait out B's minute.
  sleep.set_duration_ms(60'000);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status cancelled;
  std::thread caller([&] {
    auto probe = pb::PlatformProbe::NewStub(a_->channel());
    pb::RelayRequest request;
    request.set_method("/gameverse.echo.v1.Echo/Sleep");
    request.set_request(sleep.SerializeAsString());
    pb::RelayReply reply;
    cancelled = probe->Relay(&context, request, &reply);
  });
  const bool forwarded = eventually([&] { return remotes_of(*a_).pending_calls() == 1; });
  context.TryCancel();
  caller.join();
  ASSERT_TRUE(forwarded) << a_->log();
  EXPECT_EQ(cancelled.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(eventually([&] { return remotes_of(*a_).pending_calls() == 0; }, std::chrono::seconds(5)))
      << "the forwarded call outlived the call it was made for";

  sleep.set_duration_ms(1);
  const Relayed soon =
      relay(*a_, "/gameverse.echo.v1.Echo/Sleep", sleep.SerializeAsString(), "", false, 5000);
  EXPECT_TRUE(soon.status.ok()) << soon.status.error_message();
  EXPECT_EQ(a_->stop(), 0) << a_->log();
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct Forged {
  grpc::Status status;
  std::string reply;
};

// Calls B directly with `metadata`, as a client (or a host) could.
Forged call_with(const std::shared_ptr<grpc::Channel>& channel, const Metadata& metadata,
                 const std::string& method, const std::string& bytes) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), reply;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &reply,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  Forged out{done.get_future().get(), ""};
  std::vector<grpc::Slice> slices;
  if (out.status.ok() && reply.Dump(&slices).ok())
    for (const auto& s : slices) out.reply.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

Forged call_with(const HostProcess& host, const Metadata& metadata, const std::string& method,
                 const std::string& bytes) {
  return call_with(host.channel(), metadata, method, bytes);
}

// The metadata a host of the cluster sends with a call for `user` with `roles`, signed with `secret`.
Metadata signed_by_host(const std::string& secret, const std::string& method, const std::string& user,
                        const std::vector<std::string>& roles, int64_t skew_ms = 0) {
  platform::SignedCall call;
  call.method = method;
  call.deadline = "none";
  call.origin = "for-caller";
  call.user = user;
  call.session = "s1";
  call.roles = roles;
  call.peer = "inproc:platform-probe";
  call.host = "127.0.0.1:1";
  call.time = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count() +
                             skew_ms);
  static platform::CallSequence sequence;  // the test stands in for one host
  call.nonce = sequence.next();
  Metadata out{{platform::kClusterMacKey, platform::call_mac(secret, call)},
               {platform::kClusterHostKey, call.host},
               {platform::kClusterTimeKey, call.time},
               {platform::kClusterNonceKey, call.nonce},
               {platform::kClusterDeadlineKey, call.deadline},
               {platform::kForwardedOriginKey, call.origin},
               {platform::kForwardedCallerPeerKey, call.peer},
               {platform::kForwardedUserKey, call.user},
               {platform::kForwardedSessionKey, call.session}};
  for (const auto& role : roles) out.emplace_back(platform::kForwardedRoleKey, role);
  return out;
}

// The probe's own call to B's Sleep (a minute) is pending when the probe is unloaded: the call
// ends with the generation, before its code is unmapped, and A goes on.
TEST_F(TwoHosts, UnloadingAPluginEndsTheCallsItForwarded) {
  echo::SleepRequest sleep;
  sleep.set_duration_ms(60'000);
  Relayed held;
  std::thread caller([&] {
    held = relay(*a_, "/gameverse.echo.v1.Echo/Sleep", sleep.SerializeAsString(), "", /*as_plugin=*/true);
  });
  const bool forwarded = eventually([&] { return remotes_of(*a_).pending_calls() == 1; });
  const CommandRun unloaded =
      run_command(std::string(GV_GVCTL_BINARY) + " --addr " + a_->address() + " unload platform-probe");
  EXPECT_EQ(unloaded.exit_code, 0) << unloaded.output;
  EXPECT_TRUE(eventually([&] { return remotes_of(*a_).pending_calls() == 0; }, std::chrono::seconds(10)))
      << "the forwarded call outlived the generation that made it\n"
      << a_->log();
  caller.join();
  ASSERT_TRUE(forwarded) << a_->log();
  EXPECT_FALSE(held.status.ok());
  EXPECT_TRUE(eventually(
      [&] { return a_->log().find("plugin 'platform-probe' generation 1 retired") != std::string::npos; },
      std::chrono::seconds(10)))
      << "the generation never retired\n"
      << a_->log();
  EXPECT_EQ(a_->stop(), 0) << a_->log();
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

// Many calls in flight to an address that fails together are one outage, not many: its ejection
// does not grow with each, and while every address of a service is ejected the one back first is
// still tried.
TEST_F(TwoHosts, OneOutageEjectsAHostOnceHoweverManyCallsFailed) {
  const std::string method = "/gameverse.nowhere.v1.Nowhere/Get";
  std::vector<std::thread> callers;
  std::vector<Relayed> results(8);
  for (size_t i = 0; i < results.size(); ++i)
    callers.emplace_back([&, i] { results[i] = relay(*a_, method, ""); });
  for (auto& caller : callers) caller.join();
  for (const auto& result : results) EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  const auto remotes = remotes_of(*a_);
  for (const auto& s : remotes.services()) {
    if (s.service() != "gameverse.nowhere.v1.Nowhere") continue;
    ASSERT_EQ(s.endpoints_size(), 1);
    EXPECT_GE(s.endpoints(0).failures(), 8u);
    // eject_ms = 1000, the first step: 8 failures of one outage did not climb to 30 s.
    EXPECT_LE(s.endpoints(0).ejected_for_ms(), 1000) << s.DebugString();
  }
  const Relayed again = relay(*a_, method, "");
  EXPECT_EQ(again.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(again.status.error_message().find("skipped for another"), std::string::npos)
      << "the sole address was not tried: " << again.status.error_message();
  EXPECT_EQ(a_->stop(), 0) << a_->log();
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

// A game client sends the metadata a host forwards a caller with, to be someone else at B's gate.
TEST_F(TwoHosts, AClientCannotPoseAsAHost) {
  const std::string who = echo::WhoAmIRequest().SerializeAsString();
  const Metadata caller{{"gameverse-forwarded-origin", "for-caller"},
                        {"gameverse-forwarded-user-bin", "victim"},
                        {"gameverse-forwarded-role-bin", "moderator"}};
  // The old bearer key, a wrong MAC, a MAC with the right length, none at all.
  std::vector<Metadata> forgeries;
  forgeries.push_back(caller);
  forgeries.push_back({{platform::kForwardedByKey, "10.0.0.1:50051"}});  // posing as a forwarded call
  for (const std::string& key : {key_.substr(2), random_hex(32)}) {
    Metadata m = caller;
    m.emplace_back("gameverse-cluster-key", key);
    forgeries.push_back(m);
  }
  {
    Metadata m = signed_by_host(key_, "/gameverse.echo.v1.Echo/WhoAmI", "victim", {"moderator"});
    m[0].second = random_hex(32);  // a MAC made with another secret
    forgeries.push_back(m);
    Metadata other =
        signed_by_host(random_hex(32), "/gameverse.echo.v1.Echo/WhoAmI", "victim", {"moderator"});
    forgeries.push_back(other);
  }
  for (const auto& metadata : forgeries) {
    for (const char* method : {"/gameverse.echo.v1.Echo/WhoAmI", "/gameverse.echo.v1.Echo/Stats"}) {
      const Forged forged = call_with(*b_, metadata, method, who);
      EXPECT_EQ(forged.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << method << ": " << forged.status.error_message();
      EXPECT_CONTAINS(forged.status.error_message(), "accepted from the hosts of this cluster only");
      EXPECT_EQ(forged.reply, "");
    }
  }
  // Without a forged caller, the public echo answers as before: the check costs honest clients nothing.
  auto stub = echo::Echo::NewStub(b_->channel());
  grpc::ClientContext context;
  echo::EchoRequest ping;
  ping.set_payload("hi");
  echo::EchoReply pong;
  EXPECT_TRUE(stub->Echo(&context, ping, &pong).ok());

  // Signed with the cluster's secret (the test stands in for a host) the same caller is believed.
  const Metadata genuine = signed_by_host(key_, "/gameverse.echo.v1.Echo/WhoAmI", "victim", {"moderator"});
  const Forged believed = call_with(*b_, genuine, "/gameverse.echo.v1.Echo/WhoAmI", who);
  ASSERT_TRUE(believed.status.ok()) << believed.status.error_message();
  echo::WhoAmIReply me;
  ASSERT_TRUE(me.ParseFromString(believed.reply));
  EXPECT_EQ(me.user_id(), "victim");
  EXPECT_EQ(me.peer(), "inproc:platform-probe");
  EXPECT_EQ(me.forwarded_by(), "127.0.0.1:1") << "the signed sending host";

  // The same signed headers sent again (a replay), for another method, or signed long ago: refused.
  const Forged replayed = call_with(*b_, genuine, "/gameverse.echo.v1.Echo/WhoAmI", who);
  EXPECT_EQ(replayed.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_CONTAINS(replayed.status.error_message(), "this signed call was sent before");
  const Forged moved =
      call_with(*b_, signed_by_host(key_, "/gameverse.echo.v1.Echo/WhoAmI", "victim", {"moderator"}),
                "/gameverse.echo.v1.Echo/Stats", echo::StatsRequest().SerializeAsString());
  EXPECT_EQ(moved.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_CONTAINS(moved.status.error_message(), "the signature does not match");
  const Forged stale = call_with(
      *b_, signed_by_host(key_, "/gameverse.echo.v1.Echo/WhoAmI", "victim", {"moderator"}, -120'000),
      "/gameverse.echo.v1.Echo/WhoAmI", who);
  EXPECT_EQ(stale.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_CONTAINS(stale.status.error_message(), "ms from this host's clock");

  // Another host cannot vouch for the operator: the role is dropped, and the host's own admin
  // service takes no forwarded call at all.
  const Forged op = call_with(
      *b_, signed_by_host(key_, "/gameverse.echo.v1.Echo/WhoAmI", "operator", {"operator", "moderator"}),
      "/gameverse.echo.v1.Echo/WhoAmI", who);
  ASSERT_TRUE(op.status.ok()) << op.status.error_message();
  ASSERT_TRUE(me.ParseFromString(op.reply));
  EXPECT_EQ(std::vector<std::string>(me.roles().begin(), me.roles().end()),
            std::vector<std::string>{"moderator"});
  for (const char* method :
       {"/gameverse.host.v1.PluginAdmin/ListRemotes", "/gameverse.host.v1.PluginAdmin/ListPlugins"}) {
    const Forged admin = call_with(*b_, signed_by_host(key_, method, "operator", {"operator"}), method, "");
    EXPECT_EQ(admin.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << method << ": " << admin.status.error_message();
    EXPECT_CONTAINS(admin.status.error_message(), "takes no call forwarded from another host");
  }
  // A real forwarded call from A works with the binary secret, and the secret shows in neither log.
  const Relayed relayed = relay(*a_, "/gameverse.echo.v1.Echo/WhoAmI", who);
  EXPECT_EQ(relayed.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << relayed.status.error_message();
  EXPECT_CONTAINS(relayed.status.error_message(), "and the call forwarded to this host has none");
  EXPECT_EQ(a_->stop(), 0) << a_->log();
  EXPECT_EQ(b_->stop(), 0) << b_->log();
  EXPECT_EQ(a_->log().find(key_.substr(2)), std::string::npos) << "A logged the cluster secret";
  EXPECT_EQ(b_->log().find(key_.substr(2)), std::string::npos) << "B logged the cluster secret";
  EXPECT_CONTAINS(a_->log(), "[cluster] has no ca_file: calls between hosts travel in plaintext");
}

// Hosts B and C serve echo and announce it in the registry; A finds them there. B dies under load:
// A's calls go to C, and the registry drops B once its lease runs out. C unloads echo: it is
// withdrawn, and A's calls get UNAVAILABLE naming the service.
TEST(ClusterRegistry, AHostThatDiesDropsOutAndItsCallersFailOver) {
  if (redis_url().empty())
    GTEST_SKIP() << "GAMEVERSE_TEST_REDIS_URL is not set (run under tools/gv services)";
  const std::string cluster = "name = \"test-" + random_hex(6) + "\"\nsecret = \"" + random_hex(32) +
                              "\"\nregistry = true\nlease_ms = 1500\neject_ms = 200\n";
  const std::string redis = "[redis]\nurl = \"" + redis_url() + "\"\n";
  TempDir data_a, data_b, data_c;
  auto b = std::make_unique<HostProcess>(redis + host_config(data_b, cluster, "") + plugin("echo"));
  HostProcess c(redis + host_config(data_c, cluster, "") + plugin("echo"));
  HostProcess a(redis + host_config(data_a, cluster, "") + plugin("platform-probe"));
  const std::string service = "gameverse.echo.v1.Echo";
  std::vector<std::string> both{b->address(), c.address()};
  std::sort(both.begin(), both.end());
  ASSERT_TRUE(eventually([&] { return resolved(a, service) == both; })) << a.log();

  echo::EchoRequest ping;
  ping.set_payload("ping");
  std::atomic<bool> stop{false};
  std::atomic<int> ok_before{0}, ok_after{0};
  std::atomic<bool> killed{false};
  std::vector<std::string> failures;
  std::thread load([&] {
    while (!stop) {
      const Relayed r = relay(a, "/gameverse.echo.v1.Echo/Echo", ping.SerializeAsString(), "", false, 2000);
      if (r.status.ok()) {
        (killed ? ok_after : ok_before)++;
      } else if (r.status.error_code() != grpc::StatusCode::UNAVAILABLE) {
        failures.push_back(std::to_string(r.status.error_code()) + ": " + r.status.error_message());
      }
    }
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } joiner{stop, load};
  ASSERT_TRUE(eventually([&] { return ok_before > 20; })) << a.log();
  // Both hosts take calls: the two addresses are balanced, over one kept-open channel each.
  const auto balanced = remotes_of(a);
  ASSERT_EQ(balanced.services_size(), 1)
      << balanced.DebugString();  // this host's own services are not remote
  for (const auto& s : balanced.services()) {
    for (const auto& e : s.endpoints())
      EXPECT_GT(e.calls(), 0u) << e.address() << " took no call: " << balanced.DebugString();
  }
  kill(b->pid(), SIGKILL);
  killed = true;
  // Callers fail over to C; B drops out of the registry within its lease.
  EXPECT_TRUE(eventually([&] { return ok_after > 50; }, std::chrono::seconds(20))) << a.log();
  EXPECT_TRUE(eventually([&] { return resolved(a, service) == std::vector<std::string>{c.address()}; },
                         std::chrono::seconds(10)))
      << "the dead host stayed in the registry";
  stop = true;
  if (load.joinable()) load.join();
  for (const auto& failure : failures) ADD_FAILURE() << "a call failed other than UNAVAILABLE: " << failure;

  // C stops serving echo: it withdraws it, and no host serves it any more.
  const CommandRun unloaded =
      run_command(std::string(GV_GVCTL_BINARY) + " --addr " + c.address() + " unload echo");
  ASSERT_EQ(unloaded.exit_code, 0) << unloaded.output;
  EXPECT_TRUE(eventually([&] { return resolved(a, service).empty(); }, std::chrono::seconds(10)));
  const Relayed gone = relay(a, "/gameverse.echo.v1.Echo/Echo", ping.SerializeAsString());
  EXPECT_EQ(gone.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_CONTAINS(gone.status.error_message(), "no host serves gameverse.echo.v1.Echo");
  b.reset();
  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(c.stop(), 0) << c.log();
}

// Anyone who can write to Redis adds an unsigned entry for echo, naming a listener of their own,
// and junk of every kind. A never connects there, and goes on finding B.
TEST(ClusterRegistry, UnsignedOrJunkEntriesAreIgnored) {
  if (redis_url().empty())
    GTEST_SKIP() << "GAMEVERSE_TEST_REDIS_URL is not set (run under tools/gv services)";
  const std::string name = "test-" + random_hex(6);
  const std::string secret = random_hex(32);
  const std::string cluster =
      "name = \"" + name + "\"\nsecret = \"" + secret + "\"\nregistry = true\nlease_ms = 1500\n";
  const std::string redis = "[redis]\nurl = \"" + redis_url() + "\"\n";
  const std::string prefix = "gameverse:cluster:" + name + ":";
  const std::string service = "gameverse.echo.v1.Echo";

  // The attacker's listener: a plain TCP socket that counts who connects.
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in bound{};
  bound.sin_family = AF_INET;
  bound.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof bound;
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&bound), sizeof bound), 0);
  ASSERT_EQ(listen(listener, 16), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &length), 0);
  const std::string attacker = "127.0.0.1:" + std::to_string(ntohs(bound.sin_port));

  auto redis_cli = [&](const std::string& args) {
    const CommandRun run = run_command("redis-cli -u '" + redis_url() + "' " + args);
    EXPECT_EQ(run.exit_code, 0) << args << ": " << run.output;
  };
  const std::string far = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count() +
                                         3'600'000);
  redis_cli("SADD " + prefix + "services " + service + " gameverse.junk.v1.Str gameverse.junk.v1.Z");
  redis_cli("ZADD " + prefix + "service:" + service + " " + far + " " + attacker);  // unsigned
  redis_cli("ZADD " + prefix + "service:" + service + " " + far + " " + attacker + "#" + random_hex(32));
  redis_cli("ZADD " + prefix + "service:" + service + " +inf " + attacker + "#0");
  redis_cli("SET " + prefix + "service:gameverse.junk.v1.Str not-a-sorted-set");  // WRONGTYPE
  redis_cli("ZADD " + prefix + "service:gameverse.junk.v1.Z +inf '#' 1e300 x");

  TempDir data_a, data_b;
  HostProcess b(redis + host_config(data_b, cluster, "") + plugin("echo"));
  HostProcess a(redis + host_config(data_a, cluster, "") + plugin("platform-probe"));
  ASSERT_TRUE(eventually([&] { return resolved(a, service) == std::vector<std::string>{b.address()}; }))
      << "discovery stopped at the junk, or took an unsigned entry: " << remotes_of(a).DebugString()
      << a.log();
  echo::EchoRequest ping;
  ping.set_payload("ping");
  for (int i = 0; i < 20; ++i) {
    const Relayed r = relay(a, "/gameverse.echo.v1.Echo/Echo", ping.SerializeAsString());
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  // The entries no host of the cluster signed are gone: they cannot crowd out real ones.
  EXPECT_TRUE(eventually([&] {
    return run_command("redis-cli -u '" + redis_url() + "' ZCARD " + prefix + "service:" + service).output ==
           "1\n";
  })) << run_command("redis-cli -u '" + redis_url() + "' ZRANGE " + prefix + "service:" + service + " 0 -1")
             .output;
  const int accepted = accept(listener, nullptr, nullptr);
  EXPECT_LT(accepted, 0) << "a host connected to an address only an unsigned entry names";
  if (accepted >= 0) close(accepted);
  close(listener);
  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(b.stop(), 0) << b.log();
}

// [[remote]] names C first, which serves no echo (it answers UNIMPLEMENTED), then B, which does:
// every call ends at B.
TEST(ClusterStatic, AHostThatDoesNotServeTheMethodPassesTheCallOn) {
  const std::string cluster = "secret = \"" + random_hex(32) + "\"\n";
  TempDir data_a, data_b, data_c;
  HostProcess b(host_config(data_b, cluster, "") + plugin("echo"));
  HostProcess c(host_config(data_c, cluster, ""));
  HostProcess a(host_config(data_a, cluster,
                            "[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\naddresses = [\"" +
                                c.address() + "\", \"" + b.address() + "\"]\n") +
                plugin("platform-probe"));
  echo::EchoRequest ping;
  ping.set_payload("ping");
  for (int i = 0; i < 6; ++i) {
    const Relayed r = relay(a, "/gameverse.echo.v1.Echo/Echo", ping.SerializeAsString());
    EXPECT_TRUE(r.status.ok()) << r.status.error_code() << ": " << r.status.error_message();
  }
  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(b.stop(), 0) << b.log();
  EXPECT_EQ(c.stop(), 0) << c.log();
}

// A plugin that answers UNIMPLEMENTED itself has answered (it may have done work first): the call is
// not tried on the other host, unlike a host where no plugin serves the method.
TEST(ClusterStatic, APluginsOwnUnimplementedIsItsAnswerAndNotPassedOn) {
  const std::string cluster = "secret = \"" + random_hex(32) + "\"\n";
  TempDir data_a, data_b, data_c;
  HostProcess b(host_config(data_b, cluster, "") + plugin("echo"));
  HostProcess c(host_config(data_c, cluster, "") + plugin("echo"));
  HostProcess a(host_config(data_a, cluster,
                            "[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\naddresses = [\"" +
                                b.address() + "\", \"" + c.address() + "\"]\n") +
                plugin("platform-probe"));
  echo::FailRequest fail;
  fail.set_code(static_cast<int>(grpc::StatusCode::UNIMPLEMENTED));
  fail.set_message("not in this version");
  constexpr int kCalls = 6;
  for (int i = 0; i < kCalls; ++i) {
    const Relayed r = relay(a, "/gameverse.echo.v1.Echo/Fail", fail.SerializeAsString());
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << r.status.error_message();
    EXPECT_CONTAINS(r.status.error_message(), "not in this version");
  }
  uint64_t tries = 0;
  const auto remotes = remotes_of(a);
  for (const auto& service : remotes.services())
    for (const auto& endpoint : service.endpoints()) tries += endpoint.calls();
  EXPECT_EQ(tries, static_cast<uint64_t>(kCalls)) << "a call the plugin answered went to another host too";
  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(b.stop(), 0) << b.log();
  EXPECT_EQ(c.stop(), 0) << c.log();
}

// [[remote]] follows the config on a reload (SIGHUP or a change on disk): new addresses take calls,
// dropped ones none; a config with an error changes nothing; [cluster] itself waits for a restart.
TEST(ClusterStatic, TheRemoteListFollowsTheConfigOnReload) {
  const std::string cluster = "secret = \"" + random_hex(32) + "\"\n";
  TempDir data_a, data_b, data_c;
  HostProcess b(host_config(data_b, cluster, "") + plugin("echo"));
  HostProcess c(host_config(data_c, cluster, "") + plugin("echo"));
  auto a_config = [&](const std::string& cluster_keys, const std::string& remotes) {
    return host_config(data_a, cluster + cluster_keys, remotes) + plugin("platform-probe");
  };
  auto remote_echo = [](const std::string& address) {
    return "[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\naddresses = [\"" + address + "\"]\n";
  };
  HostProcess a(a_config("", remote_echo(b.address())));
  auto instance_of = [](const HostProcess& host) {
    grpc::ClientContext context;
    echo::StatsReply reply;
    EXPECT_TRUE(echo::Echo::NewStub(host.channel())->Stats(&context, {}, &reply).ok());
    return reply.instance_id();
  };
  // Which host's echo answers a call the probe on A makes.
  auto answered_by = [&]() -> std::string {
    const Relayed r = relay(a, "/gameverse.echo.v1.Echo/Stats", echo::StatsRequest().SerializeAsString());
    if (!r.status.ok())
      return "error " + std::to_string(r.status.error_code()) + ": " + r.status.error_message();
    echo::StatsReply reply;
    reply.ParseFromString(r.response);
    return reply.instance_id();
  };
  const std::string at_b = instance_of(b);
  const std::string at_c = instance_of(c);
  ASSERT_NE(at_b, at_c);
  EXPECT_EQ(answered_by(), at_b);

  // Moved to C.
  a.write_config(a_config("", remote_echo(c.address())));
  a.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return resolved(a, "gameverse.echo.v1.Echo") == std::vector{c.address()}; }))
      << a.log();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(answered_by(), at_c);

  // A config with an error changes nothing, the list included.
  a.write_config(a_config("", remote_echo("nohost")));
  a.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return a.log().find("nothing was changed") != std::string::npos; }))
      << a.log();
  EXPECT_EQ(resolved(a, "gameverse.echo.v1.Echo"), std::vector{c.address()});
  EXPECT_EQ(answered_by(), at_c);

  // Gone from the list: no host serves it; a change to [cluster] is reported, not applied.
  a.write_config(a_config("call_timeout_ms = 5000\n", ""));
  a.signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return resolved(a, "gameverse.echo.v1.Echo").empty(); })) << a.log();
  const Relayed gone = relay(a, "/gameverse.echo.v1.Echo/Stats", echo::StatsRequest().SerializeAsString());
  EXPECT_EQ(gone.status.error_code(), grpc::StatusCode::UNIMPLEMENTED) << gone.status.error_message();
  EXPECT_CONTAINS(gone.status.error_message(), "no host serves gameverse.echo.v1.Echo");
  EXPECT_CONTAINS(a.log(), "[cluster] settings changed in the config; they apply after a restart");

  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(b.stop(), 0) << b.log();
  EXPECT_EQ(c.stop(), 0) << c.log();
}

// Mutual TLS between hosts, with a cluster CA, host certificates for 127.0.0.1 and their own names,
// and a CA the cluster does not trust, all made by openssl for the test. B serves echo with TLS on
// its one port and takes forwarded calls only from a certificate naming host-a.internal; A serves
// auth and the probe and forwards echo to B, presenting host-a's certificate.
class ClusterTls : public ::testing::Test {
 protected:
  ClusterTls() {
    certs_.issue("host-a", "ca", "host-a.internal", "DNS:host-a.internal,IP:127.0.0.1,DNS:localhost");
    certs_.issue("host-b", "ca", "host-b.internal", "DNS:host-b.internal,IP:127.0.0.1,DNS:localhost");
  }

  // [server.tls] with `name`'s certificate and client certificates checked against the cluster CA.
  std::string server_tls(const std::string& name) const {
    return "[server.tls]\ncert_file = \"" + certs_.path(name + ".pem") + "\"\nkey_file = \"" +
           certs_.path(name + ".key") + "\"\nclient_ca_file = \"" + certs_.path("ca.pem") + "\"\n";
  }
  // [cluster] lines: the secret, the CA other hosts' certificates chain to, `name`'s client certificate.
  std::string cluster(const std::string& ca, const std::string& name, const std::string& extra = "") const {
    return secret_ + "ca_file = \"" + certs_.path(ca + ".pem") + "\"\ncert_file = \"" +
           certs_.path(name + ".pem") + "\"\nkey_file = \"" + certs_.path(name + ".key") + "\"\n" + extra;
  }
  // B's config: `tls_extra` is added to its [server.tls].
  std::string b_config(const std::string& echo_plugin,
                       const std::string& peer_names = "[\"host-a.internal\"]",
                       const std::string& tls_extra = "") const {
    return host_config(
               data_b_,
               cluster("ca", "host-b", "require_peer_certificate = true\npeer_names = " + peer_names + "\n"),
               server_tls("host-b") + tls_extra) +
           echo_plugin;
  }
  void start_b(const std::string& echo_plugin, const std::string& peer_names = "[\"host-a.internal\"]") {
    b_ = std::make_unique<HostProcess>(b_config(echo_plugin, peer_names));
  }
  void start_a(const std::string& ca) {
    a_ = std::make_unique<HostProcess>(
        host_config(data_a_, cluster(ca, "host-a"),
                    server_tls("host-a") +
                        "[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\naddresses = [\"" + b_->address() +
                        "\"]\n") +
        plugin("auth", "[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n") +
        plugin("platform-probe"));
  }
  // A TLS client of `host` that trusts the cluster CA and presents `client`'s certificate, if any.
  std::shared_ptr<grpc::Channel> tls_channel(const HostProcess& host, const std::string& client = "") const {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = certs_.pem("ca.pem");
    if (!client.empty()) {
      options.pem_private_key = certs_.pem(client + ".key");
      options.pem_cert_chain = certs_.pem(client + ".pem");
    }
    return grpc::CreateChannel(host.address(), grpc::SslCredentials(options));
  }

  std::string key_ = random_hex(32);
  std::string secret_ = "secret = \"" + key_ + "\"\n";
  Certificates certs_;
  TempDir data_a_, data_b_;
  std::unique_ptr<HostProcess> b_, a_;
};

// A forwarded call crosses with its caller over mutual TLS; and B, which needs host-a's
// certificate, still serves a game client that has none.
TEST_F(ClusterTls, AForwardedCallCrossesOverMutualTlsWithItsCaller) {
  start_b(guarded_echo());
  start_a("ca");
  auto auth = gameverse::auth::v1::Auth::NewStub(tls_channel(*a_));
  const auto session = sign_up(*auth, "grace", "", "");
  ASSERT_FALSE(session.access_token().empty());
  const Relayed who = relay(tls_channel(*a_), "/gameverse.echo.v1.Echo/WhoAmI",
                            echo::WhoAmIRequest().SerializeAsString(), session.access_token());
  ASSERT_TRUE(who.status.ok()) << who.status.error_message() << "\n" << a_->log() << "\n" << b_->log();
  echo::WhoAmIReply me;
  ASSERT_TRUE(me.ParseFromString(who.response));
  EXPECT_EQ(me.user_id(), session.account().id()) << "the caller did not travel to the other host";
  EXPECT_EQ(me.calling_plugin(), "platform-probe");

  // A game client with no certificate, on the same port.
  auto stub = echo::Echo::NewStub(tls_channel(*b_));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  echo::EchoRequest ping;
  ping.set_payload("public");
  echo::EchoReply pong;
  const grpc::Status status = stub->Echo(&context, ping, &pong);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(pong.payload(), "public");
  EXPECT_EQ(a_->log().find("[cluster] has no ca_file"), std::string::npos);
  EXPECT_EQ(a_->stop(), 0) << a_->log();
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

// A trusts only the other CA: B's server certificate is not believed, the call never reaches B's
// echo, and the caller gets UNAVAILABLE naming the service.
TEST_F(ClusterTls, ACaFileThatDoesNotMatchTheFarHostServesNothing) {
  start_b(plugin("echo"));
  start_a("other");
  const Relayed relayed = relay(tls_channel(*a_), "/gameverse.echo.v1.Echo/BlockingEcho",
                                echo::EchoRequest().SerializeAsString());
  EXPECT_EQ(relayed.status.error_code(), grpc::StatusCode::UNAVAILABLE) << relayed.status.error_message();
  EXPECT_CONTAINS(relayed.status.error_message(), "gameverse.echo.v1.Echo");
  auto stub = echo::Echo::NewStub(tls_channel(*b_));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  echo::StatsReply stats;
  const grpc::Status status = stub->Stats(&context, echo::StatsRequest(), &stats);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(stats.blocking_echoes(), 0u) << "B served a call that came over an unverified connection";
  EXPECT_EQ(a_->stop(), 0) << a_->log();
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

// Calls signed with the cluster's secret, sent straight to B: believed only over a connection
// whose client certificate the cluster CA signed for a name in peer_names.
TEST_F(ClusterTls, ASignedCallNeedsAVerifiedHostCertificateNamedInPeerNames) {
  start_b(plugin("echo"));
  const std::string method = "/gameverse.echo.v1.Echo/WhoAmI";
  const std::string who = echo::WhoAmIRequest().SerializeAsString();
  auto signed_call = [&] { return signed_by_host(key_, method, "victim", {"moderator"}); };

  // Host A's certificate: believed (the test stands in for host A).
  const Forged genuine = call_with(tls_channel(*b_, "host-a"), signed_call(), method, who);
  ASSERT_TRUE(genuine.status.ok()) << genuine.status.error_message() << "\n" << b_->log();
  echo::WhoAmIReply me;
  ASSERT_TRUE(me.ParseFromString(genuine.reply));
  EXPECT_EQ(me.user_id(), "victim");

  // TLS without a client certificate: the signature alone does not do.
  const Forged bare = call_with(tls_channel(*b_), signed_call(), method, who);
  EXPECT_EQ(bare.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << bare.status.error_message();
  EXPECT_CONTAINS(bare.status.error_message(), "[cluster] require_peer_certificate");
  EXPECT_CONTAINS(bare.status.error_message(), "presented no client certificate");
  EXPECT_EQ(bare.reply, "");

  // A certificate from a CA the cluster does not trust: no connection, or a refusal.
  const Forged stranger = call_with(tls_channel(*b_, "stranger"), signed_call(), method, who);
  EXPECT_FALSE(stranger.status.ok());
  EXPECT_EQ(stranger.reply, "");

  // The cluster CA's certificate for another name (host-b's own, and a game client's): not in peer_names.
  for (const std::string client : {"host-b", "client"}) {
    const Forged other = call_with(tls_channel(*b_, client), signed_call(), method, who);
    EXPECT_EQ(other.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << client << ": " << other.status.error_message();
    EXPECT_CONTAINS(other.status.error_message(), "none of them in [cluster] peer_names");
    EXPECT_EQ(other.reply, "");
  }
  // A forged caller with host A's certificate but no valid signature: the secret is still needed.
  Metadata forged = signed_call();
  forged[0].second = random_hex(32);
  const Forged unsigned_call = call_with(tls_channel(*b_, "host-a"), forged, method, who);
  EXPECT_EQ(unsigned_call.status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_CONTAINS(unsigned_call.status.error_message(), "the signature does not match");
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

// [server.tls] changed in the config on a reload is reported as needing a restart, and the
// running port keeps its TLS: a game client without a certificate is still served.
TEST_F(ClusterTls, AServerTlsChangeOnReloadIsReportedAsNeedingARestart) {
  start_b(plugin("echo"));
  b_->write_config(b_config(plugin("echo"), "[\"host-a.internal\"]", "require_client_cert = true\n"));
  b_->signal(SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return b_->log().find(
               "[server], [admin] and [host] watch/staging/log_format settings changed in the "
               "config; they apply after a restart") != std::string::npos;
  })) << b_->log();
  auto stub = echo::Echo::NewStub(tls_channel(*b_));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  echo::StatsReply stats;
  const grpc::Status status = stub->Stats(&context, echo::StatsRequest(), &stats);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

// peer_names match as a TLS client matches a server (RFC 6125): a DNS name against the
// certificate's DNS subjectAltNames, its CN only when it has none; an IP address against its IP
// subjectAltNames; case does not matter. URI and other kinds of subjectAltName never count.
TEST_F(ClusterTls, PeerNamesMatchTheCertificatesDnsAndIpNamesOnly) {
  // Signed by the cluster CA with host A's name as CN, but issued for something else.
  certs_.issue("impostor", "ca", "host-a.internal", "DNS:player-42.example,URI:spiffe://x/y");
  certs_.issue("cn-only", "ca", "host-a.internal");
  const std::string method = "/gameverse.echo.v1.Echo/WhoAmI";
  const std::string who = echo::WhoAmIRequest().SerializeAsString();
  auto call_as = [&](const std::string& client) {
    return call_with(tls_channel(*b_, client), signed_by_host(key_, method, "victim", {}), method, who);
  };

  start_b(plugin("echo"), "[\"Host-A.Internal\"]");
  const Forged impostor = call_as("impostor");
  EXPECT_EQ(impostor.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << impostor.status.error_message();
  EXPECT_CONTAINS(impostor.status.error_message(),
                  "the client certificate names DNS:player-42.example, none of them in [cluster] peer_names");
  EXPECT_EQ(impostor.reply, "");
  for (const std::string client : {"host-a", "cn-only"}) {
    const Forged genuine = call_as(client);
    EXPECT_TRUE(genuine.status.ok()) << client << ": " << genuine.status.error_message() << "\n" << b_->log();
  }
  EXPECT_EQ(b_->stop(), 0) << b_->log();

  start_b(plugin("echo"), "[\"127.0.0.1\"]");
  const Forged by_ip = call_as("host-a");
  EXPECT_TRUE(by_ip.status.ok()) << by_ip.status.error_message() << "\n" << b_->log();
  for (const std::string client : {"impostor", "cn-only"}) {
    const Forged other = call_as(client);
    EXPECT_EQ(other.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << client << ": " << other.status.error_message();
    EXPECT_CONTAINS(other.status.error_message(), "none of them in [cluster] peer_names");
  }
  const Forged cn_only = call_as("cn-only");
  EXPECT_CONTAINS(cn_only.status.error_message(), "the client certificate names CN:host-a.internal,");
  EXPECT_EQ(b_->stop(), 0) << b_->log();
}

// The [cluster] TLS keys are checked with the file, line and key.
TEST(ClusterConfig, MutualTlsKeysAreChecked) {
  const std::string secret = "secret = \"" + random_hex(32) + "\"\n";
  auto errors_of = [](const std::string& text) {
    std::string all;
    for (const auto& e : config::parse_config(text, "t.toml", "/tmp").errors) all += e.to_string() + "\n";
    return all;
  };
  const std::string tls =
      "[server.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca_file = \"ca.pem\"\n";
  EXPECT_EQ(errors_of(tls + "[cluster]\n" + secret +
                      "ca_file = \"ca.pem\"\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\n"
                      "require_peer_certificate = true\npeer_names = [\"host-a.internal\"]\n"),
            "");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "cert_file = \"a.pem\"\nkey_file = \"a.key\"\n"),
                  "t.toml:3:13: cluster.cert_file: a client certificate is for TLS between hosts: set "
                  "cluster.ca_file too");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "ca_file = \"ca.pem\"\ncert_file = \"a.pem\"\n"),
                  "t.toml:4:13: cluster.cert_file: a client certificate needs both cert_file and key_file");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "require_peer_certificate = true\n"),
                  "t.toml:3:28: cluster.require_peer_certificate: needs server.tls.client_ca_file");
  EXPECT_CONTAINS(errors_of(tls + "[cluster]\n" + secret + "peer_names = [\"a\"]\n"),
                  "cluster.peer_names: names in other hosts' certificates are checked only with "
                  "cluster.require_peer_certificate = true");
  EXPECT_CONTAINS(
      errors_of(tls + "[cluster]\n" + secret + "require_peer_certificate = true\npeer_names = [1]\n"),
      "cluster.peer_names: must hold strings only");
  EXPECT_CONTAINS(errors_of("[cluster]\n" + secret + "require_peer_certificate = \"yes\"\n"),
                  "cluster.require_peer_certificate: must be a boolean");

  // Any certificate from client_ca_file is not a host: peer_names is required, and never empty.
  EXPECT_CONTAINS(errors_of(tls + "[cluster]\n" + secret + "require_peer_certificate = true\n"),
                  "t.toml:7:28: cluster.peer_names: required with require_peer_certificate = true");
  EXPECT_CONTAINS(errors_of(tls + "[cluster]\n" + secret + "require_peer_certificate = true\n"),
                  "since that CA may also sign players' client certificates");
  EXPECT_CONTAINS(
      errors_of(tls + "[cluster]\n" + secret + "require_peer_certificate = true\npeer_names = []\n"),
      "t.toml:8:14: cluster.peer_names: required with require_peer_certificate = true");

  // Each name is a DNS name or an IP address, named with its index and line; stored lower-case.
  const std::string names =
      tls + "[cluster]\n" + secret + "require_peer_certificate = true\npeer_names = [\"Host-A.Internal\", ";
  for (const std::string bad : {"*.internal", "host_a.internal", "", "host-a.internal.", "-a.internal",
                                "spiffe://x/y", "300.1.2.3 "}) {
    EXPECT_CONTAINS(errors_of(names + "\"" + bad + "\"]\n"),
                    "t.toml:8:34: cluster.peer_names[1]: '" + bad + "' is not a DNS name");
  }
  const auto parsed = config::parse_config(names + "\"10.0.0.5\", \"FE80::1\"]\n", "t.toml", "/tmp");
  ASSERT_TRUE(parsed.errors.empty()) << parsed.errors.front().to_string();
  EXPECT_EQ(parsed.config->cluster.peer_names,
            (std::vector<std::string>{"host-a.internal", "10.0.0.5", "fe80::1"}));
}

// The files behind [cluster] ca_file, cert_file and key_file are checked at start, each named.
TEST(ClusterConfig, BadClusterCertificateFilesAreNamedAndNothingStarts) {
  Certificates certs;
  auto start_error = [&](const std::string& lines) {
    TempDir data;
    try {
      HostProcess host(host_config(data, "secret = \"" + random_hex(32) + "\"\n" + lines, ""));
      return std::string("the host started");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
  };
  const std::string ca = "ca_file = \"" + certs.path("ca.pem") + "\"\n";
  EXPECT_CONTAINS(start_error(ca + "cert_file = \"" + certs.path("client.pem") + "\"\nkey_file = \"" +
                              certs.path("server.key") + "\"\n"),
                  "[cluster] key_file: TLS: the key in " + certs.path("server.key") +
                      " does not belong to the certificate in " + certs.path("client.pem"));
  EXPECT_CONTAINS(start_error(ca + "cert_file = \"" + certs.path("nope.pem") + "\"\nkey_file = \"" +
                              certs.path("client.key") + "\"\n"),
                  "[cluster] cert_file: TLS: cannot read the certificate " + certs.path("nope.pem"));
  EXPECT_CONTAINS(start_error(ca + "cert_file = \"" + certs.path("client.csr") + "\"\nkey_file = \"" +
                              certs.path("client.key") + "\"\n"),
                  "[cluster] cert_file: TLS: the certificate file " + certs.path("client.csr") +
                      " holds no PEM certificate");
  EXPECT_CONTAINS(start_error(ca + "cert_file = \"" + certs.path("client.pem") + "\"\nkey_file = \"" +
                              certs.path("client.pem") + "\"\n"),
                  "[cluster] key_file: TLS: the key file " + certs.path("client.pem") +
                      " holds no unencrypted PEM private key");
  certs.issue("expired", "ca", "host-old.internal", "", -1);
  EXPECT_CONTAINS(
      start_error(ca + "cert_file = \"" + certs.path("expired.pem") + "\"\nkey_file = \"" +
                  certs.path("expired.key") + "\"\n"),
      "[cluster] cert_file: TLS: the certificate in " + certs.path("expired.pem") + " has expired");
  EXPECT_CONTAINS(
      start_error("ca_file = \"" + certs.path("client.key") + "\"\n"),
      "[cluster] ca_file: TLS: the CA file " + certs.path("client.key") + " holds no PEM certificate");
}

echo::StatsReply stats_of(const HostProcess& host) {
  auto stub = echo::Echo::NewStub(host.channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  echo::StatsReply reply;
  const grpc::Status status = stub->Stats(&context, {}, &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return reply;
}

// A host says it accepted a forwarded call in its initial metadata, before the plugin has answered:
// a signed Sleep of a minute gets the marker while it sleeps.
TEST(ClusterStatic, AHostMarksAForwardedCallServedBeforeItsPluginAnswers) {
  const std::string secret = random_hex(32);
  TempDir data;
  HostProcess b(host_config(data, "secret = \"" + secret + "\"\n", "") + plugin("echo"));
  auto stub = echo::Echo::NewStub(b.channel());
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    for (const auto& [key, value] : signed_by_host(secret, "/gameverse.echo.v1.Echo/Sleep", "", {}))
      context.AddMetadata(key, value);
    echo::SleepRequest sleep;
    sleep.set_duration_ms(60'000);
    grpc::CompletionQueue queue;
    auto reader = stub->AsyncSleep(&context, sleep, &queue);
    reader->ReadInitialMetadata(reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    const auto got = queue.AsyncNext(&tag, &ok, std::chrono::system_clock::now() + std::chrono::seconds(10));
    EXPECT_EQ(got, grpc::CompletionQueue::GOT_EVENT) << "no initial metadata while the plugin runs\n"
                                                     << b.log();
    if (got == grpc::CompletionQueue::GOT_EVENT) {
      EXPECT_TRUE(ok);
      const auto& initial = context.GetServerInitialMetadata();
      const auto served = initial.find(platform::kServedByClusterKey);
      EXPECT_NE(served, initial.end()) << "the served marker is not in the initial metadata";
      if (served != initial.end()) {
        EXPECT_EQ(std::string(served->second.data(), served->second.size()), "1");
      }
      EXPECT_EQ(stats_of(b).sleeps_started(), 1u);
      EXPECT_EQ(stats_of(b).sleeps_completed(), 0u);
    }
    context.TryCancel();
    echo::SleepReply reply;
    grpc::Status status;
    reader->Finish(&reply, &status, reinterpret_cast<void*>(2));
    for (int pending = got == grpc::CompletionQueue::GOT_EVENT ? 1 : 2; pending > 0; --pending)
      ASSERT_TRUE(queue.Next(&tag, &ok));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
    queue.Shutdown();
    while (queue.Next(&tag, &ok)) {
    }
  }
  // A client's own call is not marked.
  grpc::ClientContext context;
  echo::EchoRequest ping;
  ping.set_payload("hi");
  echo::EchoReply pong;
  ASSERT_TRUE(stub->Echo(&context, ping, &pong).ok());
  EXPECT_EQ(context.GetServerInitialMetadata().count(platform::kServedByClusterKey), 0u);
  EXPECT_EQ(context.GetServerTrailingMetadata().count(platform::kServedByClusterKey), 0u);
  EXPECT_EQ(b.stop(), 0) << b.log();
}

// B and C serve echo. A's first call to echo is a long Sleep, sent while A's connection to its host
// was still being made; that host dies while the Sleep runs. The call reached a host and ran there,
// so it fails UNAVAILABLE and is not sent again to the other, which never starts a Sleep.
TEST(ClusterStatic, ACallThatReachedAHostWhichThenDiedIsNotRunAgain) {
  const std::string cluster = "secret = \"" + random_hex(32) + "\"\n";
  TempDir data_a, data_b, data_c;
  auto b = std::make_unique<HostProcess>(host_config(data_b, cluster, "") + plugin("echo"));
  auto c = std::make_unique<HostProcess>(host_config(data_c, cluster, "") + plugin("echo"));
  HostProcess a(host_config(data_a, cluster,
                            "[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\naddresses = [\"" +
                                b->address() + "\", \"" + c->address() + "\"]\n") +
                plugin("platform-probe"));
  echo::SleepRequest sleep;
  sleep.set_duration_ms(60'000);
  Relayed held;
  std::thread caller([&] {
    held = relay(a, "/gameverse.echo.v1.Echo/Sleep", sleep.SerializeAsString(), "", false, 20'000);
  });
  HostProcess* serving = nullptr;
  const bool started = eventually([&] {
    if (stats_of(*b).sleeps_started() > 0) serving = b.get();
    if (stats_of(*c).sleeps_started() > 0) serving = c.get();
    return serving != nullptr;
  });
  if (!started) {
    b.reset();
    c.reset();
    caller.join();
    FAIL() << "the Sleep started nowhere\n" << a.log();
  }
  HostProcess* other = serving == b.get() ? c.get() : b.get();
  kill(serving->pid(), SIGKILL);
  caller.join();
  EXPECT_EQ(held.status.error_code(), grpc::StatusCode::UNAVAILABLE) << held.status.error_message();
  EXPECT_EQ(stats_of(*other).sleeps_started(), 0u) << "the call ran again on the other host\n" << a.log();
  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(other->stop(), 0) << other->log();
}

// A plugin tells a call another host forwarded from one made on its own host: the peer is the
// original caller's, and forwarded_by() names the host that forwarded it.
TEST(ClusterStatic, AForwardedCallNamesTheHostThatForwardedIt) {
  const std::string cluster = "secret = \"" + random_hex(32) + "\"\n";
  TempDir data_a, data_b;
  HostProcess b(host_config(data_b, cluster, "") + plugin("echo"));
  HostProcess a(host_config(data_a, cluster,
                            "[[remote]]\nservice = \"gameverse.echo.v1.Echo\"\naddresses = [\"" +
                                b.address() + "\"]\n") +
                plugin("platform-probe"));
  const Relayed relayed =
      relay(a, "/gameverse.echo.v1.Echo/WhoAmI", echo::WhoAmIRequest().SerializeAsString(), "", true);
  ASSERT_TRUE(relayed.status.ok()) << relayed.status.error_message();
  echo::WhoAmIReply me;
  ASSERT_TRUE(me.ParseFromString(relayed.response));
  EXPECT_EQ(me.peer(), "inproc:platform-probe");
  EXPECT_EQ(me.calling_plugin(), "platform-probe");
  EXPECT_EQ(me.plugin_with_own_trust(), "platform-probe");
  EXPECT_EQ(me.forwarded_by(), a.address());

  auto stub = echo::Echo::NewStub(b.channel());
  grpc::ClientContext context;
  ASSERT_TRUE(stub->WhoAmI(&context, {}, &me).ok());
  EXPECT_TRUE(me.peer().starts_with("ipv4:127.0.0.1:")) << me.peer();
  EXPECT_EQ(me.forwarded_by(), "") << "a direct call was taken for a forwarded one";
  EXPECT_EQ(a.stop(), 0) << a.log();
  EXPECT_EQ(b.stop(), 0) << b.log();
}

}  // namespace
}  // namespace gameverse::testing
