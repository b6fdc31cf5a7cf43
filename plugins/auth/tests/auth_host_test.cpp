// The auth plugin in the real host, through a real gRPC client, on SQLite and on PostgreSQL (the
// server `tools/gv test` starts), with the cache in process.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <tuple>

#include "expect_contains.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "host_process.hpp"
#include "platform/store.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::auth::v1;

// The host's [admin] token: its bearer, the operator, sets roles.
constexpr const char* kOperatorToken = "auth-test-operator-token-0123";

class AuthThroughTheHost : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run the suite with `tools/gv test`";
      postgres_url_ = url;
      store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + postgres_url_ + "\"\n";
    }
    suffix_ = std::to_string(std::random_device()() % 1'000'000);
    plugin_ = data_.path() / "auth.so";  // a copy of its own, so a test can rebuild it in place
    std::filesystem::copy_file(GV_PLUGIN_DIR "/auth.so", plugin_);
    start();
  }
  void TearDown() override {
    if (HasFailure() && host_) std::cerr << "host log:\n" << host_->log();
  }
  void start() {
    host_ = std::make_unique<HostProcess>(
        overridden("[host]\nwatch = false\ndata_dir = \"" + data_.path().string() + "\"\n" + store_ +
                       "[admin]\ntoken = \"" + kOperatorToken + "\"\n[[plugin]]\nname = \"auth\"\npath = \"" +
                       plugin_.string() +
                       "\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n"
                       "max_failed_logins_per_account = 3\nlockout_s = 2\n" +
                       (signing_key_.empty() ? "" : "signing_key = \"" + signing_key_ + "\"\n"),
                   extra_config_));
    auth_ = pb::Auth::NewStub(host_->channel());
  }
  // `config` with the "key = value" lines of `overrides` in place of its own lines of those keys.
  static std::string overridden(const std::string& config, const std::string& overrides) {
    std::istringstream in(config);
    std::string out;
    for (std::string line; std::getline(in, line);) {
      const std::string key = line.substr(0, line.find(" = ") + 3);
      if (key.size() < 4 || overrides.find(key) == std::string::npos) out += line + "\n";
    }
    return out + overrides;
  }
  std::string name(const std::string& base) const { return base + suffix_; }
  // The store the host uses, opened directly: for writing what the plugin would never write.
  std::unique_ptr<platform::StoreBackend> open_store() const {
    if (GetParam() == "postgresql") return platform::open_postgres_store(postgres_url_, 1);
    return platform::open_sqlite_store((data_.path() / "gameverse.db").string());
  }

  // Restarts the host with these [plugin.config] lines added.
  void restart_with(const std::string& config) {
    extra_config_ = config;
    ASSERT_EQ(host_->stop(), 0) << host_->log();
    start();
  }
  // `forwarded_for`: sent as x-forwarded-for, which counts when 127.0.0.1 is a trusted proxy.
  grpc::Status login(const std::string& user, const std::string& password, pb::Session* out,
                     const std::string& forwarded_for = "") {
    grpc::ClientContext context;
    if (!forwarded_for.empty()) context.AddMetadata("x-forwarded-for", forwarded_for);
    pb::LoginRequest request;
    request.set_username(user);
    request.set_password(password);
    return auth_->Login(&context, request, out);
  }
  grpc::Status register_account(const std::string& user, const std::string& password, pb::Session* out) {
    grpc::ClientContext context;
    pb::RegisterRequest request;
    request.set_username(user);
    request.set_password(password);
    return auth_->Register(&context, request, out);
  }
  grpc::Status refresh(const std::string& token, pb::Session* out) {
    grpc::ClientContext context;
    pb::RefreshRequest request;
    request.set_refresh_token(token);
    return auth_->Refresh(&context, request, out);
  }
  // Calls started together; wait() returns every status once all have answered.
  class InFlight {
   public:
    using Done = std::function<void(grpc::Status)>;
    // start(context, i, done) starts call i on `context`; done(status) reports its end.
    template <class Start>
    InFlight(int count, Start&& start) : statuses_(static_cast<size_t>(count)), left_(count) {
      for (int i = 0; i < count; ++i) {
        contexts_.push_back(std::make_unique<grpc::ClientContext>());
        contexts_.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
        start(*contexts_.back(), i, Done([this, i](grpc::Status status) {
          std::lock_guard lock(mu_);
          statuses_[static_cast<size_t>(i)] = std::move(status);
          if (--left_ == 0) all_done_.notify_all();
        }));
      }
    }
    ~InFlight() { wait(); }
    const std::vector<grpc::Status>& wait() {
      std::unique_lock lock(mu_);
      all_done_.wait(lock, [&] { return left_ == 0; });
      return statuses_;
    }

   private:
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts_;
    std::vector<grpc::Status> statuses_;
    std::mutex mu_;
    std::condition_variable all_done_;
    int left_;
  };
  // Registers name(prefix + i) for i < count, all at once.
  std::unique_ptr<InFlight> registers(int count, const std::string& prefix) {
    return std::make_unique<InFlight>(count, [&](grpc::ClientContext& context, int i, InFlight::Done done) {
      auto request = std::make_shared<pb::RegisterRequest>();
      auto reply = std::make_shared<pb::Session>();
      request->set_username(name(prefix + std::to_string(i)));
      request->set_password("correct horse");
      auth_->async()->Register(&context, request.get(), reply.get(),
                               [request, reply, done](grpc::Status status) { done(std::move(status)); });
    });
  }

  grpc::Status device(const std::string& device_id, pb::Session* out) {
    grpc::ClientContext context;
    pb::DeviceRequest request;
    request.set_device_id(device_id);
    return auth_->AuthenticateDevice(&context, request, out);
  }
  grpc::Status account(const std::string& access_token, pb::Account* out) {
    grpc::ClientContext context;
    if (!access_token.empty()) context.AddMetadata("authorization", "Bearer " + access_token);
    return auth_->GetAccount(&context, pb::GetAccountRequest(), out);
  }

  TempDir data_;
  std::filesystem::path plugin_;
  std::string signing_key_;   // [plugin.config] signing_key, when set
  std::string extra_config_;  // more [plugin.config] lines
  std::string store_;
  std::string postgres_url_;
  std::string suffix_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<pb::Auth::Stub> auth_;
};

TEST_P(AuthThroughTheHost, RegisterLoginRefreshAndReuseDetection) {
  pb::Session registered;
  ASSERT_TRUE(register_account(name("ada"), "correct horse", &registered).ok());
  EXPECT_EQ(registered.account().username(), name("ada"));
  EXPECT_EQ(registered.account().roles(0), "player");
  pb::Session again;
  const grpc::Status taken = register_account(name("ada"), "correct horse", &again);
  EXPECT_EQ(taken.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(taken.error_message(), "the username '" + name("ada") + "' is taken");
  const grpc::Status weak = register_account(name("bob"), "short", &again);
  EXPECT_EQ(weak.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(weak.error_message(), "a password has at least 10 characters");

  pb::Session session;
  ASSERT_TRUE(login(name("ada"), "correct horse", &session).ok());
  pb::Account me;
  ASSERT_TRUE(account(session.access_token(), &me).ok());
  EXPECT_EQ(me.id(), registered.account().id());
  const grpc::Status anonymous = account("", &me);
  EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(anonymous.error_message(),
            "method /gameverse.auth.v1.Auth/GetAccount needs a signed-in caller: send "
            "the metadata authorization: Bearer <access token>");

  pb::Session rotated;
  ASSERT_TRUE(refresh(session.refresh_token(), &rotated).ok());
  EXPECT_NE(rotated.refresh_token(), session.refresh_token());
  pb::Session replay;
  const grpc::Status reused = refresh(session.refresh_token(), &replay);
  EXPECT_EQ(reused.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_CONTAINS(reused.error_message(), "already used: the session is revoked");
  EXPECT_EQ(refresh(rotated.refresh_token(), &replay).error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << "the session survived the reuse of one of its tokens";
}

// Three wrong passwords (max_failed_logins_per_account in this config) lock the username from
// that address: the right password is refused there too, until the lock (2 s here) expires.
TEST_P(AuthThroughTheHost, WrongPasswordsLockTheUsernameFromThatAddressAndTheLockExpires) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("eve"), "correct horse", &session).ok());
  for (int i = 0; i < 3; ++i) {
    const grpc::Status wrong = login(name("eve"), "wrong horse!", &session);
    EXPECT_EQ(wrong.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(wrong.error_message(), "wrong username or password");
  }
  const grpc::Status locked = login(name("eve"), "correct horse", &session);
  EXPECT_EQ(locked.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(locked.error_message(),
            "too many failed logins for this username from this address: try again in 2 s");
  EXPECT_TRUE(eventually([&] { return login(name("eve"), "correct horse", &session).ok(); },
                         std::chrono::seconds(10)))
      << "the lock did not expire";
}

// A lock tells nothing: an existing and an unknown username get the same answers, locked or not.
TEST_P(AuthThroughTheHost, LockedExistingAndUnknownUsernamesAnswerAlike) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("ivy"), "correct horse", &session).ok());
  std::vector<std::string> existing, unknown;
  for (int i = 0; i < 4; ++i) {
    for (auto [user, answers] : {std::pair{name("ivy"), &existing}, std::pair{name("nobody"), &unknown}}) {
      const grpc::Status status = login(user, i < 3 ? "wrong horse!" : "correct horse", &session);
      answers->push_back(std::to_string(status.error_code()) + " " + status.error_message());
    }
  }
  EXPECT_EQ(existing, unknown);
  EXPECT_EQ(existing.back(),
            std::to_string(grpc::StatusCode::RESOURCE_EXHAUSTED) +
                " too many failed logins for this username from this address: try again in 2 s");
}

// Behind a trusted proxy the client is the forwarded address: an attacker's address is locked
// out of a username, its owner at another address signs in.
TEST_P(AuthThroughTheHost, TheOwnerSignsInWhileAnAttackersAddressIsLocked) {
  restart_with("trusted_proxies = \"127.0.0.1\"\nlockout_s = 600\n");
  pb::Session session;
  ASSERT_TRUE(register_account(name("own"), "correct horse", &session).ok());
  for (int i = 0; i < 3; ++i) login(name("own"), "wrong horse!", &session, "203.0.113.7");
  const grpc::Status attacker = login(name("own"), "correct horse", &session, "203.0.113.7");
  EXPECT_EQ(attacker.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << attacker.error_message();
  const grpc::Status owner = login(name("own"), "correct horse", &session, "198.51.100.1");
  EXPECT_TRUE(owner.ok()) << owner.error_message();
}

// x-forwarded-for counts only from a trusted proxy: without one, every forwarded address a client
// invents is the same client (the peer), and its failures add up.
TEST_P(AuthThroughTheHost, AnUntrustedPeersForwardedForIsIgnored) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("xff"), "correct horse", &session).ok());
  for (int i = 0; i < 3; ++i) {
    login(name("xff"), "wrong horse!", &session, "203.0.113." + std::to_string(i + 1));
  }
  const grpc::Status locked = login(name("xff"), "correct horse", &session, "198.51.100.1");
  EXPECT_EQ(locked.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << locked.error_message();
}

// A trusted_proxies entry that is no address or network refuses the plugin's load, naming it;
// the host goes on serving.
TEST_P(AuthThroughTheHost, ATrustedProxyThatIsNoNetworkIsAConfigErrorNamingIt) {
  restart_with("trusted_proxies = \"fd00::/8, 10.0.0.0/33\"\n");
  EXPECT_TRUE(eventually([&] {
    return host_->log().find("trusted_proxies: '10.0.0.0/33' has a prefix length outside 0 to 32") !=
           std::string::npos;
  })) << host_->log();
  pb::Session session;
  EXPECT_EQ(register_account(name("cfg"), "correct horse", &session).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

// IPv6 counts per /64: addresses in one /64 share a counter, the next /64 has its own.
TEST_P(AuthThroughTheHost, Ipv6AddressesInOneSlash64ShareTheirFailures) {
  restart_with("trusted_proxies = \"127.0.0.1\"\nlockout_s = 600\n");
  pb::Session session;
  ASSERT_TRUE(register_account(name("six"), "correct horse", &session).ok());
  for (const char* address : {"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"}) {
    EXPECT_EQ(login(name("six"), "wrong horse!", &session, address).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  const grpc::Status same_block = login(name("six"), "correct horse", &session, "2001:db8:1:2:abcd::9");
  EXPECT_EQ(same_block.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << same_block.error_message();
  const grpc::Status next_block = login(name("six"), "correct horse", &session, "2001:db8:1:3::1");
  EXPECT_TRUE(next_block.ok()) << next_block.error_message();
}

// Concurrent guesses cannot all pass one check before any of them is counted: of 20 wrong
// passwords sent at once, at most max_failed_logins_per_account (3) are checked at all.
TEST_P(AuthThroughTheHost, ConcurrentGuessesAreCountedBeforeTheyAreChecked) {
  // Every guess inside one counting window, however slow the build (the fixture's is 2 s).
  restart_with("lockout_s = 600\n");
  pb::Session session;
  ASSERT_TRUE(register_account(name("par"), "correct horse", &session).ok());
  InFlight logins(20, [&](grpc::ClientContext& context, int, InFlight::Done done) {
    auto request = std::make_shared<pb::LoginRequest>();
    auto reply = std::make_shared<pb::Session>();
    request->set_username(name("par"));
    request->set_password("wrong horse!");
    auth_->async()->Login(&context, request.get(), reply.get(),
                          [request, reply, done](grpc::Status status) { done(std::move(status)); });
  });
  size_t checked = 0;
  for (const grpc::Status& status : logins.wait()) {
    if (status.error_message() == "wrong username or password") ++checked;
    EXPECT_TRUE(status.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
        << status.error_message();
  }
  EXPECT_LE(checked, 3u);
  EXPECT_GE(checked, 1u);
}

// Hashing has its own bound (hash_workers = 1 here, hash_queue = 1): with 200 Registers arriving
// at once, the calls that do not hash (Refresh, GetVerificationKeys) still answer at once, and the
// Registers beyond the bound are told to retry instead of queueing. Argon2id at its default cost
// here, so that 200 queued hashes would take many seconds. The bound on the cheap calls: 100 ms
// plus twice the time of one Register alone, which scales with a slow (sanitizer) build, while
// waiting behind the backlog would take about 50 Registers' time (200 over the plugin's 4 threads).
TEST_P(AuthThroughTheHost, CheapCallsAnswerWhileRegistersPileUp) {
  restart_with(
      "argon2_opslimit = 3\nargon2_memlimit_kib = 65536\nhash_workers = 1\nhash_queue = 1\n"
      "registrations_per_address_per_hour = 100000\n");
  pb::Session session;
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(register_account(name("ref"), "correct horse", &session).ok());
  const auto one_register = std::chrono::steady_clock::now() - started;
  const auto bound = std::chrono::milliseconds(100) + 2 * one_register;

  const std::unique_ptr<InFlight> pile = registers(200, "pile");
  std::chrono::steady_clock::duration slowest{};
  for (int i = 0; i < 5; ++i) {
    auto at = std::chrono::steady_clock::now();
    pb::Session rotated;
    const grpc::Status refreshed = refresh(session.refresh_token(), &rotated);
    ASSERT_TRUE(refreshed.ok()) << refreshed.error_message();
    session = rotated;
    slowest = std::max(slowest, std::chrono::steady_clock::now() - at);
    at = std::chrono::steady_clock::now();
    pb::VerificationKeys keys;
    grpc::ClientContext context;
    ASSERT_TRUE(auth_->GetVerificationKeys(&context, pb::GetVerificationKeysRequest(), &keys).ok());
    slowest = std::max(slowest, std::chrono::steady_clock::now() - at);
  }
  size_t registered = 0, busy = 0;
  for (const grpc::Status& status : pile->wait()) {
    if (status.ok()) {
      ++registered;
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
      EXPECT_CONTAINS(status.error_message(), "auth is busy checking passwords");
      ++busy;
    }
  }
  EXPECT_LT(slowest, bound) << "the slowest cheap call took "
                            << std::chrono::duration_cast<std::chrono::milliseconds>(slowest).count()
                            << " ms; one Register alone "
                            << std::chrono::duration_cast<std::chrono::milliseconds>(one_register).count()
                            << " ms";
  EXPECT_GE(registered, 1u);
  EXPECT_GT(busy, 100u) << "the Registers queued instead of being told to retry";
}

// Register and AuthenticateDevice are limited per client address; beyond the limit the answer is
// RESOURCE_EXHAUSTED naming the limit and when to retry.
TEST_P(AuthThroughTheHost, RegistersAndDeviceSignInsBeyondThePerAddressLimitsAreRefused) {
  restart_with("registrations_per_address_per_hour = 3\ndevice_sign_ins_per_address_per_minute = 4\n");
  pb::Session session;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(register_account(name("lim") + std::to_string(i), "correct horse", &session).ok());
  }
  const grpc::Status refused = register_account(name("lim9"), "correct horse", &session);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_CONTAINS(refused.error_message(),
                  "too many registrations from this address: at most 3 (registrations_per_address_per_hour); "
                  "retry in ");
  const std::string id = "device-0123456789abcdef-" + suffix_;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(device(id, &session).ok());
  const grpc::Status too_many = device(id, &session);
  EXPECT_EQ(too_many.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_CONTAINS(
      too_many.error_message(),
      "too many device sign-ins from this address: at most 4 (device_sign_ins_per_address_per_minute)");
}

// LinkUsername answers "taken" only within the client address's registration limit (shared with
// Register): it is no unmetered way to learn which usernames exist.
TEST_P(AuthThroughTheHost, LinkUsernameIsLimitedWithTheRegistrationsOfTheAddress) {
  restart_with("registrations_per_address_per_hour = 1\n");
  pb::Session session;
  ASSERT_TRUE(register_account(name("ada"), "correct horse", &session).ok());
  pb::Session device_session;
  ASSERT_TRUE(device("device-0123456789abcdef-" + suffix_, &device_session).ok());
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + device_session.access_token());
  pb::LinkUsernameRequest request;
  request.set_username(name("ada"));
  request.set_password("correct horse");
  pb::Account reply;
  const grpc::Status status = auth_->LinkUsername(&context, request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_CONTAINS(status.error_message(),
                  "too many registrations from this address: at most 1 (registrations_per_address_per_hour)");
}

// A device id is a secret: the store keeps only its hash, GetAccount shows a fingerprint, and a
// short id is refused with what a device id must be.
TEST_P(AuthThroughTheHost, DeviceIdsAreStoredHashedAndNeverReturned) {
  const std::string id = "device-0123456789abcdef-" + suffix_;
  pb::Session session;
  ASSERT_TRUE(device(id, &session).ok());
  EXPECT_EQ(session.account().device_ids_size(), 0);
  ASSERT_EQ(session.account().device_fingerprints_size(), 1);
  EXPECT_EQ(session.account().device_fingerprints(0).size(), 12u);
  const grpc::Status short_id = device("too-short-device-id", &session);
  EXPECT_EQ(short_id.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      short_id.error_message(),
      "a device id is a random secret the client makes once, 22 to 128 characters (128 bits or more, e.g. "
      "16 random bytes as base64url); this one has 19");
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  const auto store = open_store();
  for (const char* collection : {"devices", "accounts"}) {
    platform::StoreQuery query;
    query.collection = collection;
    query.limit = 1000;
    for (const auto& object : store->list("auth", query).objects) {
      EXPECT_EQ(object.key.find(id), std::string::npos) << collection;
      EXPECT_EQ(object.value.find(id), std::string::npos) << collection << "/" << object.key;
    }
  }
  start();
  pb::Session again;
  ASSERT_TRUE(device(id, &again).ok());
  EXPECT_EQ(again.account().id(), session.account().id());
}

// An account stored before device ids were hashed (a plain id as the key of its device entry)
// signs in by that id, and is rewritten so that the plain id is gone from the store.
TEST_P(AuthThroughTheHost, APlainDeviceIdFromBeforeHashingIsRewritten) {
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  const std::string id = "legacy-" + suffix_, account_id = "legacy-account-" + suffix_;
  platform::StoreWrite account, index;
  account.collection = "accounts";
  account.key = account_id;
  // AccountRecord { roles: "player", device_ids: id, created_unix_ms: 1 }
  account.value = "\x1a\x06player\x22" + std::string(1, static_cast<char>(id.size())) + id + "\x28\x01";
  account.owner = account_id;
  index.collection = "devices";
  index.key = id;
  index.value =
      "\x0a" + std::string(1, static_cast<char>(account_id.size())) + account_id;  // AccountIndexRecord
  index.owner = account_id;
  open_store()->write("auth", {account, index});
  start();
  pb::Session session;
  const grpc::Status signed_in = device(id, &session);
  ASSERT_TRUE(signed_in.ok()) << signed_in.error_message();
  EXPECT_EQ(session.account().id(), account_id);
  ASSERT_TRUE(device(id, &session).ok());
  EXPECT_EQ(session.account().id(), account_id);
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  const auto store = open_store();
  EXPECT_FALSE(store->get("auth", "devices", id).has_value());
  EXPECT_EQ(store->get("auth", "accounts", account_id)->value.find(id), std::string::npos);
  start();
}

// Sessions whose refresh chain has ended go from the store, and with them their refresh records
// (spent or not); a live session and its records stay.
TEST_P(AuthThroughTheHost, EndedSessionsAndTheirRefreshRecordsArePurged) {
  pb::Session live;
  ASSERT_TRUE(register_account(name("pur"), "correct horse", &live).ok());
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  const std::string ended = "ended-session-" + suffix_;
  platform::StoreWrite session, spent, unspent;
  session.collection = "sessions";
  session.key = ended;
  session.value = std::string("\x08\x01\x10\x02\x18\x00", 6);  // SessionRecord, expired in 1970
  session.owner = "someone";
  for (auto [record, key, flag] :
       {std::tuple{&spent, "spent-", '\x01'}, std::tuple{&unspent, "unspent-", '\x00'}}) {
    record->collection = "refresh";
    record->key = key + suffix_;
    record->value =
        "\x0a" + std::string(1, static_cast<char>(ended.size())) + ended + "\x10" + std::string(1, flag);
  }
  open_store()->write("auth", {session, spent, unspent});
  restart_with("purge_interval_s = 1\n");
  EXPECT_TRUE(eventually([&] {
    const auto store = open_store();
    return !store->get("auth", "sessions", ended) && !store->get("auth", "refresh", "spent-" + suffix_) &&
           !store->get("auth", "refresh", "unspent-" + suffix_);
  })) << host_->log();
  pb::Session rotated;
  const grpc::Status refreshed = refresh(live.refresh_token(), &rotated);
  EXPECT_TRUE(refreshed.ok()) << refreshed.error_message();
}

TEST_P(AuthThroughTheHost, DevicesLinkAndAdminsGrantRoles) {
  pb::Session device;
  {
    grpc::ClientContext context;
    pb::DeviceRequest request;
    request.set_device_id("device-0123456789abcdef-" + suffix_);
    ASSERT_TRUE(auth_->AuthenticateDevice(&context, request, &device).ok());
  }
  EXPECT_TRUE(device.account().username().empty());
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + device.access_token());
    pb::LinkUsernameRequest request;
    request.set_username(name("dev"));
    request.set_password("correct horse");
    pb::Account linked;
    ASSERT_TRUE(auth_->LinkUsername(&context, request, &linked).ok());
    EXPECT_EQ(linked.username(), name("dev"));
  }
  pb::Session player;
  ASSERT_TRUE(register_account(name("root"), "correct horse", &player).ok());
  EXPECT_EQ(player.account().roles_size(), 1) << "registering gave more than the player role";
  {
    grpc::ClientContext context;  // the operator names the account by its username
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    pb::RoleRequest request;
    request.set_username(name("root"));
    request.set_role("admin");
    pb::Account changed;
    const grpc::Status granted = auth_->GrantRole(&context, request, &changed);
    ASSERT_TRUE(granted.ok()) << granted.error_message();
    EXPECT_EQ(changed.id(), player.account().id());
  }
  pb::Session root;
  ASSERT_TRUE(refresh(player.refresh_token(), &root).ok());
  EXPECT_EQ(root.account().roles_size(), 2) << "the granted admin role is not in the next token";
  for (const auto& [token, expected] : {std::pair{device.access_token(), grpc::StatusCode::PERMISSION_DENIED},
                                        std::pair{root.access_token(), grpc::StatusCode::OK}}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    pb::RoleRequest request;
    request.set_account_id(device.account().id());
    request.set_role("moderator");
    pb::Account changed;
    EXPECT_EQ(auth_->GrantRole(&context, request, &changed).error_code(), expected);
  }
  pb::Session relogin;
  ASSERT_TRUE(login(name("dev"), "correct horse", &relogin).ok());
  EXPECT_EQ(relogin.account().id(), device.account().id());
  EXPECT_EQ(relogin.account().roles_size(), 2);
}

// The first admin is made by the operator (gvctl grant-role): a config that still lists
// bootstrap_admins refuses the plugin, naming the key and its line.
TEST(AuthConfig, BootstrapAdminsIsRefused) {
  TempDir data;
  HostProcess host("[host]\nwatch = false\ndata_dir = \"" + data.path().string() +
                   "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
                   "/auth.so\"\n[plugin.config]\nbootstrap_admins = \"root\"\n");
  EXPECT_CONTAINS(
      host.log(),
      "gameverse.toml:8:1: plugin[0].config.bootstrap_admins: unknown key; plugin 'auth' declares:");
}

// Sessions and signing keys live in the host's store: a restarted host verifies the tokens and
// refreshes the sessions it issued before.
TEST_P(AuthThroughTheHost, SessionsSurviveARestartOfTheHost) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("sam"), "correct horse", &session).ok());
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  start();
  pb::Account me;
  const grpc::Status verified = account(session.access_token(), &me);
  ASSERT_TRUE(verified.ok()) << verified.error_message();
  EXPECT_EQ(me.username(), name("sam"));
  pb::Session rotated;
  EXPECT_TRUE(refresh(session.refresh_token(), &rotated).ok());
  pb::VerificationKeys keys;
  grpc::ClientContext context;
  ASSERT_TRUE(auth_->GetVerificationKeys(&context, pb::GetVerificationKeysRequest(), &keys).ok());
  ASSERT_GE(keys.keys_size(), 1);
  EXPECT_EQ(keys.keys(0).algorithm(), "EdDSA");
  EXPECT_EQ(keys.keys(0).public_key().size(), 32u);
}

// After a leak the operator configures another key and restarts: the gate refuses tokens of the
// old key at once, only the new key is published, and the session goes on by refreshing.
TEST_P(AuthThroughTheHost, AReplacedConfiguredKeyIsRefusedAtTheGate) {
  auto configured_kids = [&] {
    pb::VerificationKeys keys;
    grpc::ClientContext context;
    EXPECT_TRUE(auth_->GetVerificationKeys(&context, pb::GetVerificationKeysRequest(), &keys).ok());
    std::vector<std::string> kids;
    for (const auto& key : keys.keys()) {
      if (key.kid().rfind("config-", 0) == 0) kids.push_back(key.kid());
    }
    return kids;
  };
  signing_key_ = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  start();
  pb::Session session;
  ASSERT_TRUE(register_account(name("lee"), "correct horse", &session).ok());
  pb::Account me;
  ASSERT_TRUE(account(session.access_token(), &me).ok());
  const std::vector<std::string> leaked = configured_kids();
  ASSERT_EQ(leaked.size(), 1u);

  signing_key_ = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  start();
  // The gate looks for the unknown key in the background first (UNAVAILABLE meanwhile).
  grpc::Status refused;
  ASSERT_TRUE(eventually([&] {
    refused = account(session.access_token(), &me);
    return refused.error_code() != grpc::StatusCode::UNAVAILABLE;
  }));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED) << refused.error_message();
  const std::vector<std::string> now_published = configured_kids();
  ASSERT_EQ(now_published.size(), 1u);  // the new configured key only
  EXPECT_NE(now_published[0], leaked[0]);
  pb::Session refreshed;
  ASSERT_TRUE(refresh(session.refresh_token(), &refreshed).ok());
  EXPECT_TRUE(account(refreshed.access_token(), &me).ok());
}

// A reload of the auth plugin itself: tokens issued by the old generation verify in the new one.
TEST_P(AuthThroughTheHost, TokensVerifyAcrossAReloadOfThePlugin) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("rex"), "correct horse", &session).ok());
  std::ofstream(plugin_, std::ios::app | std::ios::binary) << '\n';  // a new build of the same code
  host_->signal(SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return host_->log().find("plugin 'auth' generation 2") != std::string::npos;
  })) << host_->log();
  pb::Account me;
  const grpc::Status verified = account(session.access_token(), &me);
  EXPECT_TRUE(verified.ok()) << verified.error_message();
  pb::Session rotated;
  EXPECT_TRUE(refresh(session.refresh_token(), &rotated).ok());
}

// The plugin's records are proto2 with required fields: a stored account that lacks one is
// DATA_LOSS naming the collection and key, never an account read with defaults.
TEST_P(AuthThroughTheHost, AStoredAccountMissingARequiredFieldIsDataLoss) {
  pb::Session session;
  ASSERT_TRUE(register_account(name("cor"), "correct horse", &session).ok());
  const std::string id = session.account().id();
  ASSERT_EQ(host_->stop(), 0) << host_->log();
  // An AccountRecord with its username (field 1) only: created_unix_ms (field 5) is required.
  const std::string username = name("cor");
  platform::StoreWrite partial;
  partial.collection = "accounts";
  partial.key = id;
  partial.value = "\x0a" + std::string(1, static_cast<char>(username.size())) + username;
  partial.owner = id;
  open_store()->write("auth", {partial});
  start();

  const std::string expected =
      "collection 'accounts' key '" + id +
      "' holds a gameverse.auth.records.v1.AccountRecord without its required fields";
  pb::Account me;
  const grpc::Status by_token = account(session.access_token(), &me);
  EXPECT_EQ(by_token.error_code(), grpc::StatusCode::DATA_LOSS) << by_token.error_message();
  EXPECT_EQ(by_token.error_message(), expected);
  // Signing in reaches the same account through the username's index record.
  const grpc::Status by_name = login(name("cor"), "correct horse", &session);
  EXPECT_EQ(by_name.error_code(), grpc::StatusCode::DATA_LOSS) << by_name.error_message();
  EXPECT_EQ(by_name.error_message(), expected);
  pb::Session other;
  EXPECT_TRUE(register_account(name("dan"), "correct horse", &other).ok()) << "the host stopped serving";
}

INSTANTIATE_TEST_SUITE_P(Backends, AuthThroughTheHost, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
