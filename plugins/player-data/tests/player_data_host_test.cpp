// The player-data plugin in the real host, through a real gRPC client, on SQLite and on PostgreSQL
// (the server `tools/gv test` starts): players signed in through the real auth plugin, versions and
// quotas under concurrent writers, names claimed in a race, another player's data, bad input, and a
// reload of the plugin under load.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <latch>
#include <limits>
#include <random>
#include <thread>

#include "expect_contains.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "gameverse/platformprobe/v1/platform_probe.grpc.pb.h"
#include "gameverse/playerdata/v1/playerdata.grpc.pb.h"
#include "host_process.hpp"
#include "run_command.hpp"
#include "sign_up.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::playerdata::v1;
namespace auth = gameverse::auth::v1;
namespace platformprobe = gameverse::platformprobe::v1;

constexpr const char* kOperatorToken = "player-data-test-operator-token-0123";
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

struct Player {
  std::string id;
  std::string token;
  std::string refresh_token;
};

class PlayerDataThroughTheHost : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run the suite with `tools/gv test`";
      store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + std::string(url) + "\"\n";
    }
    // Names of their own: the PostgreSQL store is shared between tests and runs.
    suffix_ = std::to_string(std::random_device()() % 1'000'000);
    start("max_writes_per_player_per_minute = 100000\n");
  }

  // (Re)starts the host with the player-data config keys `player_data_config` on top of the
  // fixture's, and the platform-probe plugin, which relays calls with its own trust.
  void start(const std::string& player_data_config) {
    stop_host();
    host_ = std::make_unique<HostProcess>(
        "[host]\nwatch = false\ndata_dir = \"" + data_.path().string() + "\"\n" + store_ +
        "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\ntoken = \"" + kOperatorToken +
        "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
        "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n"
        "device_sign_ins_per_address_per_minute = 100000\ndevice_accounts_per_address_per_hour = 100000\n"
        "[[plugin]]\nname = \"player-data\"\npath = \"" GV_PLUGIN_DIR
        "/player-data.so\"\n[plugin.config]\nname_change_cooldown_s = 3600\nmax_slots_per_player = 3\n"
        "max_slot_bytes = 1000\nmax_slot_bytes_per_player = 2400\nmax_metadata_fields = 4\n"
        "max_metadata_bytes = 200\nmax_stats_per_request = 8\nmax_write_attempts = 1000\n"
        // The stats these tests write as players; any other is for admins and trusted plugins.
        "player_writable_stats = \"kills,wins,gold,hits,floor,nothing,s,settings.*\"\n"
        "allowed_avatar_hosts = \"cdn.example.com\"\n" +
        player_data_config +
        "[[plugin]]\nname = \"platform-probe\"\npath = \"" GV_PROBE_DIR "/platform-probe.so\"\n");
    auth_ = auth::Auth::NewStub(host_->channel());
    data_stub_ = pb::PlayerData::NewStub(host_->channel());
    probe_ = platformprobe::PlatformProbe::NewStub(host_->channel());
  }
  void TearDown() override {
    if (HasFailure() && host_) std::cerr << "host log:\n" << host_->log();
    stop_host();
  }

  // Stops the host, which must exit cleanly: under the asan and tsan presets the plugin runs
  // instrumented inside it, and a sanitizer's report lands in its log and exit code.
  void stop_host() {
    if (!host_) return;
    const int code = host_->stop();
    const std::string log = host_->log();
    EXPECT_EQ(code, 0) << log;
    for (const char* report : {"Sanitizer", "runtime error:"}) {
      EXPECT_EQ(log.find(report), std::string::npos) << log;
    }
    host_.reset();
  }

  std::string name(const std::string& base) const { return base + suffix_; }

  // A new player, signed in through the auth plugin with a device id.
  Player player(const std::string& device) {
    grpc::ClientContext context;
    auth::DeviceRequest request;
    request.set_device_id("device-" + device + "-" + suffix_ + "-0123456789abcdef");
    auth::Session session;
    const grpc::Status status = auth_->AuthenticateDevice(&context, request, &session);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {session.account().id(), session.access_token(), session.refresh_token()};
  }

  // The same player with `role` granted by the operator, in a refreshed token.
  Player with_role(const Player& p, const std::string& role) {
    const auth::Session session = grant_role(*auth_, p.id, p.refresh_token, role, kOperatorToken);
    return {p.id, session.access_token(), session.refresh_token()};
  }

  // Calls method `m` of the PlayerData stub as `p` (anonymous when its token is empty).
  template <class Request, class Reply, class Method>
  grpc::Status call(const Player& p, Method m, const Request& request, Reply* reply) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (!p.token.empty()) context.AddMetadata("authorization", "Bearer " + p.token);
    return (data_stub_.get()->*m)(&context, request, reply);
  }

  grpc::Status set_name(const Player& p, const std::string& display_name, pb::Profile* out = nullptr) {
    pb::SetDisplayNameRequest request;
    request.set_display_name(display_name);
    pb::Profile ignored;
    return call(p, &pb::PlayerData::Stub::SetDisplayName, request, out != nullptr ? out : &ignored);
  }
  pb::Profile profile(const Player& as, const std::string& player_id = "") {
    pb::GetProfileRequest request;
    request.set_player_id(player_id);
    pb::Profile out;
    const grpc::Status status = call(as, &pb::PlayerData::Stub::GetProfile, request, &out);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }
  grpc::Status write_slot(const Player& p, const std::string& slot, const std::string& data,
                          std::optional<int64_t> expected, pb::Slot* out = nullptr) {
    pb::WriteSlotRequest request;
    request.set_name(slot);
    request.set_data(data);
    if (expected) request.set_expected_version(*expected);
    pb::Slot ignored;
    return call(p, &pb::PlayerData::Stub::WriteSlot, request, out != nullptr ? out : &ignored);
  }
  grpc::Status get_slot(const Player& as, const std::string& player_id, const std::string& slot,
                        pb::Slot* out) {
    pb::GetSlotRequest request;
    request.set_player_id(player_id);
    request.set_name(slot);
    return call(as, &pb::PlayerData::Stub::GetSlot, request, out);
  }
  grpc::Status increment(const Player& p, const std::string& stat, int64_t by, pb::Stats* out = nullptr,
                         const std::string& player_id = "") {
    pb::UpdateStatsRequest request;
    request.set_player_id(player_id);
    pb::StatUpdate* u = request.add_updates();
    u->set_name(stat);
    u->set_increment(by);
    pb::Stats ignored;
    return call(p, &pb::PlayerData::Stub::UpdateStats, request, out != nullptr ? out : &ignored);
  }
  pb::Stats stats(const Player& as, const std::string& player_id = "") {
    pb::GetStatsRequest request;
    request.set_player_id(player_id);
    pb::Stats out;
    const grpc::Status status = call(as, &pb::PlayerData::Stub::GetStats, request, &out);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }
  // UpdateStats for `player_id` from the platform-probe plugin, with its own trust (sdk::as_plugin),
  // or, given `for_player`, with that player's principal.
  grpc::Status increment_as_plugin(const std::string& player_id, const std::string& stat, int64_t by,
                                   pb::Stats* out, const Player* for_player = nullptr) {
    pb::UpdateStatsRequest update;
    update.set_player_id(player_id);
    pb::StatUpdate* u = update.add_updates();
    u->set_name(stat);
    u->set_increment(by);
    platformprobe::RelayRequest relay;
    relay.set_method("/gameverse.playerdata.v1.PlayerData/UpdateStats");
    relay.set_request(update.SerializeAsString());
    relay.set_timeout_ms(30'000);
    relay.set_as_plugin(for_player == nullptr);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (for_player != nullptr) context.AddMetadata("authorization", "Bearer " + for_player->token);
    platformprobe::RelayReply reply;
    const grpc::Status status = probe_->RelayBlocking(&context, relay, &reply);
    if (status.ok()) {
      EXPECT_TRUE(out->ParseFromString(reply.response()));
    }
    return status;
  }
  pb::ListSlotsReply slots(const Player& as) {
    pb::ListSlotsRequest request;
    request.set_page_size(100);
    pb::ListSlotsReply out;
    const grpc::Status status = call(as, &pb::PlayerData::Stub::ListSlots, request, &out);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }
  // Reloads the plugin; returns the generation serving afterwards.
  uint64_t reload() {
    auto admin = gameverse::host::v1::PluginAdmin::NewStub(host_->channel());
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
    gameverse::host::v1::ReloadPluginRequest request;
    request.set_name("player-data");
    request.set_force(true);
    gameverse::host::v1::OperationResult result;
    const grpc::Status status = admin->ReloadPlugin(&context, request, &result);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return result.generation();
  }

  TempDir data_;
  std::string store_;
  std::string suffix_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<auth::Auth::Stub> auth_;
  std::unique_ptr<pb::PlayerData::Stub> data_stub_;
  std::unique_ptr<platformprobe::PlatformProbe::Stub> probe_;
};

TEST_P(PlayerDataThroughTheHost, OthersSeePublicFieldsAndChangeNothingModeratorsReadAndReset) {
  const Player ada = player("ada");
  const Player bob = player("bob");
  ASSERT_TRUE(set_name(ada, name("Ada")).ok());
  {
    pb::UpdateProfileRequest request;
    request.set_avatar_asset_id("avatars:knight");
    auto* bio = request.add_set_metadata();
    bio->set_key("bio");
    bio->set_value("hello");
    bio->set_visibility(pb::VISIBILITY_PUBLIC);
    auto* email = request.add_set_metadata();
    email->set_key("email");
    email->set_value("ada@example.com");
    email->set_visibility(pb::VISIBILITY_PRIVATE);
    pb::Profile out;
    const grpc::Status status = call(ada, &pb::PlayerData::Stub::UpdateProfile, request, &out);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(out.metadata_size(), 2);
  }
  ASSERT_TRUE(write_slot(ada, "main", "ada's save", 0).ok());
  ASSERT_TRUE(increment(ada, "kills", 7).ok());

  const pb::Profile seen = profile(bob, ada.id);
  EXPECT_EQ(seen.display_name(), name("Ada"));
  EXPECT_EQ(seen.version(), 0) << "the version tells others when private fields change";
  EXPECT_EQ(seen.avatar_asset_id(), "avatars:knight");
  ASSERT_EQ(seen.metadata_size(), 1) << "another player saw a private field";
  EXPECT_EQ(seen.metadata(0).key(), "bio");
  EXPECT_EQ(seen.name_changed_unix_ms(), 0);
  EXPECT_EQ(profile(ada).metadata_size(), 2);

  pb::Slot slot;
  grpc::Status refused = get_slot(bob, ada.id, "main", &slot);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(refused.error_message(),
            "player_id: a player reads the save slots of only their own; leave player_id empty");
  {
    pb::GetStatsRequest request;
    request.set_player_id(ada.id);
    pb::Stats out;
    EXPECT_EQ(call(bob, &pb::PlayerData::Stub::GetStats, request, &out).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    pb::ListSlotsRequest list;
    list.set_player_id(ada.id);
    pb::ListSlotsReply listed;
    EXPECT_EQ(call(bob, &pb::PlayerData::Stub::ListSlots, list, &listed).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  refused = increment(bob, "kills", -7, nullptr, ada.id);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(refused.error_message(),
            "player_id: a player changes the stats of only their own; leave player_id empty");
  {
    pb::ResetDisplayNameRequest request;
    request.set_player_id(ada.id);
    pb::Profile out;
    refused = call(bob, &pb::PlayerData::Stub::ResetDisplayName, request, &out);
    EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(refused.error_message(), "resetting a display name needs the role moderator or admin");
  }
  {
    pb::Profile out;
    const grpc::Status anonymous =
        call(Player{}, &pb::PlayerData::Stub::GetProfile, pb::GetProfileRequest(), &out);
    EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // Nothing of ada's changed.
  ASSERT_TRUE(get_slot(ada, "", "main", &slot).ok());
  EXPECT_EQ(slot.data(), "ada's save");
  EXPECT_EQ(stats(ada).values().at("kills"), 7);
  EXPECT_EQ(profile(ada).display_name(), name("Ada"));

  const Player mod = with_role(player("mod"), "moderator");
  EXPECT_EQ(profile(mod, ada.id).metadata_size(), 2) << "a moderator reads everything";
  ASSERT_TRUE(get_slot(mod, ada.id, "main", &slot).ok());
  EXPECT_EQ(slot.data(), "ada's save");
  EXPECT_EQ(stats(mod, ada.id).values().at("kills"), 7);
  {
    pb::ResetDisplayNameRequest request;
    request.set_player_id(ada.id);
    request.set_reason("impersonation");
    pb::Profile out;
    const grpc::Status status = call(mod, &pb::PlayerData::Stub::ResetDisplayName, request, &out);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(out.display_name(), "");
  }
  // The name stays withheld from everyone, the player included, and the cooldown starts again.
  grpc::Status withheld = set_name(bob, name("ADA"));
  EXPECT_EQ(withheld.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(withheld.error_message(), "display_name: '" + name("ADA") + "' is withheld by moderation (as '" +
                                          name("Ada") + "', which it is too like)");
  EXPECT_EQ(set_name(ada, name("Ada")).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(set_name(ada, name("Ada") + "c").error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(set_name(bob, name("Ada") + "b").ok());
  {
    pb::ClearProfileFieldsRequest request;
    request.set_player_id(ada.id);
    request.set_clear_avatar(true);
    request.add_remove_metadata("bio");
    request.set_reason("rude bio");
    pb::Profile out;
    grpc::Status status = call(bob, &pb::PlayerData::Stub::ClearProfileFields, request, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(status.error_message(), "clearing profile fields needs the role moderator or admin");
    status = call(mod, &pb::PlayerData::Stub::ClearProfileFields, request, &out);
    ASSERT_TRUE(status.ok()) << status.error_message();
    const pb::Profile cleared = profile(ada);
    EXPECT_EQ(cleared.avatar_case(), pb::Profile::AVATAR_NOT_SET);
    ASSERT_EQ(cleared.metadata_size(), 1);
    EXPECT_EQ(cleared.metadata(0).key(), "email");
  }

  pb::ListPlayersRequest request;
  request.set_prefix(name("ada"));
  request.set_page_size(1);
  std::vector<std::string> listed;
  for (;;) {
    pb::ListPlayersReply page;
    const grpc::Status status = call(bob, &pb::PlayerData::Stub::ListPlayers, request, &page);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const auto& p : page.players()) listed.push_back(p.display_name());
    if (page.next_cursor().empty()) break;
    request.set_cursor(page.next_cursor());
  }
  EXPECT_EQ(listed, (std::vector<std::string>{name("Ada") + "b"}));
}

TEST_P(PlayerDataThroughTheHost, AStaleVersionIsAbortedAndChangesNothing) {
  const Player ada = player("ada");
  pb::Slot first;
  ASSERT_TRUE(write_slot(ada, "main", "one", 0, &first).ok());
  EXPECT_EQ(first.version(), 1);
  pb::Slot second;
  ASSERT_TRUE(write_slot(ada, "main", "two", 1, &second).ok());
  EXPECT_EQ(second.version(), 2);
  grpc::Status stale = write_slot(ada, "main", "three", 1);
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_EQ(stale.error_message(),
            "expected_version: save slot 'main' is at version 2, not 1; nothing was written");
  stale = write_slot(ada, "main", "three", 0);
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  {
    pb::DeleteSlotRequest request;
    request.set_name("main");
    request.set_expected_version(1);
    pb::DeleteSlotReply reply;
    EXPECT_EQ(call(ada, &pb::PlayerData::Stub::DeleteSlot, request, &reply).error_code(),
              grpc::StatusCode::ABORTED);
  }
  pb::Slot read;
  ASSERT_TRUE(get_slot(ada, "", "main", &read).ok());
  EXPECT_EQ(read.data(), "two");
  EXPECT_EQ(read.version(), 2);
  EXPECT_EQ(slots(ada).total_bytes(), 3);

  // Deleted and created again (another device), the slot does not start over at a version a
  // stale device still holds.
  {
    pb::DeleteSlotRequest request;
    request.set_name("main");
    request.set_expected_version(2);
    pb::DeleteSlotReply reply;
    ASSERT_TRUE(call(ada, &pb::PlayerData::Stub::DeleteSlot, request, &reply).ok());
  }
  pb::Slot recreated;
  ASSERT_TRUE(write_slot(ada, "main", "from another device", 0, &recreated).ok());
  EXPECT_EQ(recreated.version(), 3);
  for (int64_t old_version : {1, 2}) {
    stale = write_slot(ada, "main", "stale", old_version);
    EXPECT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
    EXPECT_EQ(stale.error_message(), "expected_version: save slot 'main' is at version 3, not " +
                                         std::to_string(old_version) + "; nothing was written");
  }
  ASSERT_TRUE(get_slot(ada, "", "main", &read).ok());
  EXPECT_EQ(read.data(), "from another device");
  EXPECT_EQ(read.version(), 3);
}

TEST_P(PlayerDataThroughTheHost, ConcurrentSlotWritesCannotPassTheQuota) {
  const Player ada = player("ada");
  constexpr int kWriters = 12;
  std::latch start(kWriters);
  std::vector<grpc::Status> statuses(kWriters);
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      start.arrive_and_wait();
      statuses[static_cast<size_t>(i)] =
          write_slot(ada, "slot" + std::to_string(i), std::string(500, 'x'), 0);
    });
  }
  for (auto& w : writers) w.join();
  int ok = 0;
  for (const auto& s : statuses) {
    if (s.ok()) {
      ++ok;
      continue;
    }
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_EQ(s.error_message(), "name: a player has at most 3 save slots (max_slots_per_player); 3 exist");
  }
  EXPECT_EQ(ok, 3);
  pb::ListSlotsReply listed = slots(ada);
  EXPECT_EQ(listed.slots_size(), 3);
  EXPECT_EQ(listed.slot_count(), 3);
  EXPECT_EQ(listed.total_bytes(), 1500);

  // Bytes: of two concurrent growths by 500 bytes one fits (2400 at most).
  std::latch again(2);
  std::vector<grpc::Status> grown(2);
  std::vector<std::thread> growers;
  for (int i = 0; i < 2; ++i) {
    growers.emplace_back([&, i] {
      again.arrive_and_wait();
      grown[static_cast<size_t>(i)] =
          write_slot(ada, listed.slots(i).name(), std::string(1000, 'y'), std::nullopt);
    });
  }
  for (auto& g : growers) g.join();
  EXPECT_NE(grown[0].ok(), grown[1].ok()) << grown[0].error_message() << " / " << grown[1].error_message();
  for (const auto& s : grown) {
    if (!s.ok()) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_EQ(s.error_message(),
                "data: a player's save slots hold at most 2400 bytes (max_slot_bytes_per_player); "
                "this write makes 2500");
    }
  }
  listed = slots(ada);
  int64_t sum = 0;
  for (const auto& s : listed.slots()) sum += s.size_bytes();
  EXPECT_EQ(listed.total_bytes(), sum);
  EXPECT_EQ(sum, 2000);
}

TEST_P(PlayerDataThroughTheHost, ConcurrentIncrementsAreNeverLost) {
  const Player ada = player("ada");
  constexpr int kClients = 8, kEach = 25;
  std::latch start(kClients);
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < kEach; ++i) {
        const grpc::Status status = increment(ada, "wins", 1);
        if (!status.ok()) {
          ++failed;
          ADD_FAILURE() << status.error_message();
        }
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(stats(ada).values().at("wins"), kClients * kEach);
  // How often writers met: reported, not asserted (it depends on the machine's timing).
  const CommandRun scrape = run_command(
      "curl -sS --max-time 30 http://127.0.0.1:" + std::to_string(host_->http_port()) + "/metrics");
  ASSERT_EQ(scrape.exit_code, 0) << scrape.output;
  const auto count = [&](const std::string& outcome) {
    const std::string series =
        "gameverse_player_data_write_conflicts_total{plugin=\"player-data\",record=\"stats\","
        "outcome=\"" +
        outcome + "\"} ";
    const size_t at = scrape.output.find(series);
    if (at == std::string::npos) return 0.0;
    const size_t value = at + series.size();
    return std::stod(scrape.output.substr(value, scrape.output.find('\n', value) - value));
  };
  EXPECT_EQ(count("aborted"), 0);
  RecordProperty("conflicts_retried", std::to_string(static_cast<int64_t>(count("retried"))));
  std::cout << kClients * kEach << " increments by " << kClients << " clients met " << count("retried")
            << " concurrent writes, each retried\n";
}

TEST_P(PlayerDataThroughTheHost, AStatUpdateRetriedWithItsRequestIdIsAppliedOnce) {
  const Player ada = player("ada");
  ASSERT_TRUE(increment(ada, "gold", 100).ok());
  pb::UpdateStatsRequest request;
  request.set_request_id("reward-7");
  pb::StatUpdate* u = request.add_updates();
  u->set_name("gold");
  u->set_increment(25);
  pb::Stats first, replay;
  ASSERT_TRUE(call(ada, &pb::PlayerData::Stub::UpdateStats, request, &first).ok());
  ASSERT_TRUE(call(ada, &pb::PlayerData::Stub::UpdateStats, request, &replay).ok());
  EXPECT_EQ(first.values().at("gold"), 125);
  EXPECT_EQ(replay.values().at("gold"), 125);
  EXPECT_EQ(stats(ada).values().at("gold"), 125) << "the replay was applied again";
  u->set_increment(26);
  const grpc::Status other = call(ada, &pb::PlayerData::Stub::UpdateStats, request, &replay);
  EXPECT_EQ(other.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(other.error_message(),
            "request_id: 'reward-7' was used for other updates; give each update its own");
  // Across a reload of the plugin too: the ids live with the stats.
  reload();
  u->set_increment(25);
  ASSERT_TRUE(call(ada, &pb::PlayerData::Stub::UpdateStats, request, &replay).ok());
  EXPECT_EQ(stats(ada).values().at("gold"), 125);
}

TEST_P(PlayerDataThroughTheHost, TwoPlayersClaimingOneNameAtOnceOneWins) {
  for (int round = 0; round < 10; ++round) {
    // A fresh pair each round: a name change has a cooldown.
    const Player p1 = player("x" + std::to_string(round));
    const Player p2 = player("y" + std::to_string(round));
    const std::string contested = name("Race" + std::to_string(round) + "n");
    std::latch start(2);
    grpc::Status s1, s2;
    std::thread t1([&] {
      start.arrive_and_wait();
      s1 = set_name(p1, contested);
    });
    std::thread t2([&] {
      start.arrive_and_wait();
      // The other spelling of the same name.
      std::string upper = contested;
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      s2 = set_name(p2, upper);
    });
    t1.join();
    t2.join();
    ASSERT_NE(s1.ok(), s2.ok()) << contested << ": " << s1.error_message() << " / " << s2.error_message();
    const grpc::Status& lost = s1.ok() ? s2 : s1;
    EXPECT_EQ(lost.error_code(), grpc::StatusCode::ALREADY_EXISTS) << lost.error_message();
    EXPECT_CONTAINS(lost.error_message(), "is taken");
    const Player& winner = s1.ok() ? p1 : p2;
    const Player& loser = s1.ok() ? p2 : p1;
    EXPECT_FALSE(profile(winner).display_name().empty());
    EXPECT_TRUE(profile(loser).display_name().empty());
  }
}

TEST_P(PlayerDataThroughTheHost, BadInputIsAClearErrorAndChangesNothing) {
  const Player ada = player("ada");
  ASSERT_TRUE(set_name(ada, name("Ada")).ok());
  ASSERT_TRUE(increment(ada, "gold", kMax - 1).ok());
  ASSERT_TRUE(write_slot(ada, "main", "keep", 0).ok());
  const pb::Profile before = profile(ada);
  const Player bob = player("bob");

  struct Case {
    std::string name;
    grpc::StatusCode code;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"x", grpc::StatusCode::INVALID_ARGUMENT,
            "display_name: a display name has 3 to 24 characters, not 1"},
           {std::string(30, 'a'), grpc::StatusCode::INVALID_ARGUMENT,
            "display_name: a display name has 3 to 24 characters, not 30"},
           {"Zo\u00eb\u0430" + suffix_, grpc::StatusCode::INVALID_ARGUMENT,
            "display_name: a display name is written in one script (Latin may go with Han, Hiragana, "
            "Katakana or Hangul); this one mixes scripts whose letters look alike, such as Latin with "
            "Cyrillic or Greek"},
           {"Zo<" + suffix_, grpc::StatusCode::INVALID_ARGUMENT,
            "display_name: a display name has letters and digits (of any script) with single ' ', '_' or '-' "
            "between them; U+003C at character 3 is none of them"},
           {"Adm1n", grpc::StatusCode::INVALID_ARGUMENT,
            "display_name: 'Adm1n' is reserved (or looks like a reserved name)"},
           {"-dash" + suffix_, grpc::StatusCode::INVALID_ARGUMENT,
            "display_name: a display name begins and ends with a letter or digit"},
           {name("ADA"), grpc::StatusCode::ALREADY_EXISTS,
            "display_name: '" + name("ADA") + "' is taken (as '" + name("Ada") + "', which it is too like)"},
       }) {
    const grpc::Status status = set_name(bob, c.name);
    EXPECT_EQ(status.error_code(), c.code) << c.name;
    EXPECT_EQ(status.error_message(), c.message) << c.name;
  }
  EXPECT_TRUE(profile(bob).display_name().empty());

  {
    pb::UpdateProfileRequest request;
    request.set_avatar_url("https://cdn.example.com/ok.png");
    auto* big = request.add_set_metadata();
    big->set_key("bio");
    big->set_value(std::string(300, 'x'));
    big->set_visibility(pb::VISIBILITY_PUBLIC);
    pb::Profile out;
    grpc::Status status = call(ada, &pb::PlayerData::Stub::UpdateProfile, request, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(status.error_message(),
              "set_metadata: a profile's metadata keys and values hold at most 200 bytes "
              "(max_metadata_bytes); this "
              "makes 303");
    big->set_value(std::string(2000, 'x'));
    status = call(ada, &pb::PlayerData::Stub::UpdateProfile, request, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(),
              "set_metadata[0].value: at most 1024 bytes (max_metadata_value_bytes), not 2000");
    big->set_value("fine");
    big->set_visibility(pb::VISIBILITY_UNSPECIFIED);
    status = call(ada, &pb::PlayerData::Stub::UpdateProfile, request, &out);
    EXPECT_EQ(status.error_message(), "set_metadata[0].visibility: VISIBILITY_PUBLIC or VISIBILITY_PRIVATE");
    big->set_visibility(pb::VISIBILITY_PUBLIC);
    for (int i = 0; i < 5; ++i) request.add_remove_metadata("k" + std::to_string(i));
    status = call(ada, &pb::PlayerData::Stub::UpdateProfile, request, &out);
    EXPECT_EQ(status.error_message(), "remove_metadata: at most 4 keys (max_metadata_fields), not 5");
    request.clear_remove_metadata();
    request.set_avatar_url("javascript:alert(1)");
    status = call(ada, &pb::PlayerData::Stub::UpdateProfile, request, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(), "avatar_url: an avatar URL begins with https://");
    // A host the game did not list would learn the address of everyone shown the avatar.
    request.set_avatar_url("https://203.0.113.9/logger.png");
    status = call(ada, &pb::PlayerData::Stub::UpdateProfile, request, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(
        status.error_message(),
        "avatar_url: an avatar URL names one of the hosts allowed_avatar_hosts lists (cdn.example.com), not "
        "'203.0.113.9'");
  }
  const pb::Profile after = profile(ada);
  EXPECT_EQ(after.version(), before.version()) << "a refused update changed the profile";
  EXPECT_EQ(after.avatar_case(), pb::Profile::AVATAR_NOT_SET);
  EXPECT_EQ(after.metadata_size(), 0);

  grpc::Status status = write_slot(ada, "main", std::string(1001, 'x'), std::nullopt);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "data: a save slot holds at most 1000 bytes (max_slot_bytes), not 1001");
  status = write_slot(ada, "../etc", "x", std::nullopt);
  EXPECT_EQ(status.error_message(), "name: [A-Za-z0-9_.-] only; '/' at byte 2 is not");
  pb::Slot slot;
  ASSERT_TRUE(get_slot(ada, "", "main", &slot).ok());
  EXPECT_EQ(slot.data(), "keep");
  EXPECT_EQ(slot.version(), 1);

  pb::Stats out;
  status = increment(ada, "gold", 2, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(status.error_message(),
            "updates[0].increment of 'gold': 9223372036854775806 + 2 is outside int64 [-9223372036854775808, "
            "9223372036854775807]");
  {
    pb::UpdateStatsRequest request;
    auto* set = request.add_updates();
    set->set_name("floor");
    set->set_set(std::numeric_limits<int64_t>::min());
    auto* under = request.add_updates();
    under->set_name("floor");
    under->set_increment(-1);
    status = call(ada, &pb::PlayerData::Stub::UpdateStats, request, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
    request.clear_updates();
    request.add_updates()->set_name("nothing");
    status = call(ada, &pb::PlayerData::Stub::UpdateStats, request, &out);
    EXPECT_EQ(status.error_message(), "updates[0]: give increment or set");
    request.clear_updates();
    for (int i = 0; i < 9; ++i) request.add_updates()->set_name("s");
    status = call(ada, &pb::PlayerData::Stub::UpdateStats, request, &out);
    EXPECT_EQ(status.error_message(), "updates: 1 to 8 per call (max_stats_per_request), not 9");
  }
  const pb::Stats left = stats(ada);
  EXPECT_EQ(left.values_size(), 1) << "a refused update added a stat";
  EXPECT_EQ(left.values().at("gold"), kMax - 1);
  ASSERT_TRUE(increment(ada, "gold", 1, &out).ok());
  EXPECT_EQ(out.values().at("gold"), kMax);
}

TEST_P(PlayerDataThroughTheHost, AReloadUnderLoadFailsNoCallAndLosesNothing) {
  const Player ada = player("ada");
  constexpr int kClients = 3;  // a slot each: max_slots_per_player
  std::atomic<bool> stop{false};
  std::atomic<int> acknowledged{0};
  std::atomic<int> failed{0};
  std::vector<int> last_version(kClients, 0);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      // Each client increments one stat and writes its own slot over the version it last saw.
      std::optional<int64_t> version = 0;
      while (!stop) {
        grpc::Status status = increment(ada, "hits", 1);
        if (status.ok()) {
          ++acknowledged;
        } else {
          ++failed;
          ADD_FAILURE() << "increment: " << status.error_message();
        }
        pb::Slot written;
        status = write_slot(ada, "client" + std::to_string(c), std::to_string(acknowledged.load()), version,
                            &written);
        if (status.ok()) {
          version = written.version();
          last_version[static_cast<size_t>(c)] = static_cast<int>(written.version());
        } else {
          ++failed;
          ADD_FAILURE() << "write_slot: " << status.error_message();
        }
      }
    });
  }
  // One more client names new players and lists them, so that every generation of the plugin
  // folds names with ICU (loaded once per process, kept across reloads).
  std::vector<std::string> named;
  clients.emplace_back([&] {
    for (int i = 0; !stop; ++i) {
      const Player p = player("namer" + std::to_string(i));
      const std::string display = name("Reload") + "_" + std::to_string(i);
      grpc::Status status = set_name(p, display);
      if (!status.ok()) {
        ++failed;
        ADD_FAILURE() << "set_name: " << status.error_message();
        continue;
      }
      named.push_back(display);
      pb::ListPlayersRequest request;
      request.set_prefix(display);
      pb::ListPlayersReply page;
      request.set_page_size(100);
      status = call(p, &pb::PlayerData::Stub::ListPlayers, request, &page);
      if (!status.ok() || page.players_size() == 0 || page.players(0).display_name() != display) {
        ++failed;
        ADD_FAILURE() << "list_players: " << status.error_message() << " " << page.ShortDebugString();
      }
    }
  });
  ASSERT_TRUE(eventually([&] { return acknowledged > 20; }));
  EXPECT_EQ(reload(), 2u);
  int at_reload = acknowledged;
  ASSERT_TRUE(eventually([&] { return acknowledged > at_reload + 20; }));
  EXPECT_EQ(reload(), 3u);
  at_reload = acknowledged;
  ASSERT_TRUE(eventually([&] { return acknowledged > at_reload + 20; }));
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(stats(ada).values().at("hits"), acknowledged.load()) << "an acknowledged increment was lost";
  for (int c = 0; c < kClients; ++c) {
    pb::Slot slot;
    ASSERT_TRUE(get_slot(ada, "", "client" + std::to_string(c), &slot).ok());
    EXPECT_EQ(slot.version(), last_version[static_cast<size_t>(c)]) << "an acknowledged save was lost";
  }
  EXPECT_GT(named.size(), 0u);
  for (const auto& display : named) {
    pb::ListPlayersRequest request;
    request.set_prefix(display);
    pb::ListPlayersReply page;
    request.set_page_size(1);
    ASSERT_TRUE(call(ada, &pb::PlayerData::Stub::ListPlayers, request, &page).ok());
    ASSERT_EQ(page.players_size(), 1) << display;
    EXPECT_EQ(page.players(0).display_name(), display) << "an acknowledged name was lost";
  }
}

TEST_P(PlayerDataThroughTheHost, ACursorFromAnotherQueryIsRefused) {
  const Player ada = player("ada");
  const Player bob = player("bob");
  const Player cy = player("cy");
  ASSERT_TRUE(set_name(ada, name("Pa") + "a").ok());
  ASSERT_TRUE(set_name(bob, name("Pa") + "b").ok());
  ASSERT_TRUE(set_name(cy, name("Qb") + "c").ok());
  pb::ListPlayersRequest request;
  request.set_prefix(name("Pa"));
  request.set_page_size(1);
  pb::ListPlayersReply page;
  ASSERT_TRUE(call(ada, &pb::PlayerData::Stub::ListPlayers, request, &page).ok());
  ASSERT_FALSE(page.next_cursor().empty());
  const std::string players_cursor = page.next_cursor();
  // The host's store ties a cursor to its query.
  const std::string refused =
      "the cursor is not valid for this query: it was altered, comes from another query, or from before the "
      "host restarted";

  // The same cursor with another prefix.
  request.set_prefix(name("Qb"));
  request.set_cursor(players_cursor);
  grpc::Status status = call(ada, &pb::PlayerData::Stub::ListPlayers, request, &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), refused);

  // A slots cursor in ListPlayers, and a players cursor in ListSlots.
  for (const char* slot : {"a", "b"}) ASSERT_TRUE(write_slot(ada, slot, "x", 0).ok());
  pb::ListSlotsRequest slots_request;
  slots_request.set_page_size(1);
  pb::ListSlotsReply slots_page;
  ASSERT_TRUE(call(ada, &pb::PlayerData::Stub::ListSlots, slots_request, &slots_page).ok());
  ASSERT_FALSE(slots_page.next_cursor().empty());
  request.set_prefix(name("Pa"));
  request.set_cursor(slots_page.next_cursor());
  status = call(ada, &pb::PlayerData::Stub::ListPlayers, request, &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), refused);
  slots_request.set_cursor(players_cursor);
  status = call(ada, &pb::PlayerData::Stub::ListSlots, slots_request, &slots_page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), refused);

  // Its own query goes on from it.
  request.set_cursor(players_cursor);
  ASSERT_TRUE(call(ada, &pb::PlayerData::Stub::ListPlayers, request, &page).ok());
  ASSERT_EQ(page.players_size(), 1);
  EXPECT_EQ(page.players(0).display_name(), name("Pa") + "b");
}

// Stats are no player's to raise: admins and trusted plugins write them, players only the listed ones.
TEST_P(PlayerDataThroughTheHost, StatsAreWrittenByAdminsAndTrustedPluginsPlayersWriteOnlyListedOnes) {
  start("max_writes_per_player_per_minute = 100000\ntrusted_plugins = \"platform-probe\"\n");
  const Player ada = player("ada");
  pb::Stats out;
  grpc::Status status = increment(ada, "rank", 1000, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(
      status.error_message(),
      "updates[0].name: stat 'rank' is written by admins and trusted plugins; players write only the stats "
      "player_writable_stats lists");
  EXPECT_EQ(stats(ada).values().count("rank"), 0u) << "a refused write changed the stat";
  ASSERT_TRUE(increment(ada, "settings.volume", 3, &out).ok()) << "a listed prefix was refused";

  const Player admin = with_role(player("admin"), "admin");
  status = increment(admin, "rank", 10, &out, ada.id);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(out.player_id(), ada.id);
  EXPECT_EQ(out.values().at("rank"), 10);

  status = increment_as_plugin(ada.id, "rank", 5, &out);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(out.values().at("rank"), 15);
  EXPECT_EQ(stats(ada).values().at("rank"), 15) << "the player reads their own";

  // The trusted plugin calling for the player writes that player's stats, and nobody else's.
  status = increment_as_plugin("", "rank", 1, &out, &ada);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(out.values().at("rank"), 16);
  status = increment_as_plugin(admin.id, "rank", 1, &out, &ada);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "player_id: a player changes the stats of only their own; leave player_id empty");
  EXPECT_EQ(stats(admin).values().count("rank"), 0u);

  // The same plugin, no longer trusted: its own trust reaches nothing.
  start("max_writes_per_player_per_minute = 100000\n");
  status = increment_as_plugin(ada.id, "rank", 5, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(),
            "plugin 'platform-probe' calls with its own trust but is not in trusted_plugins");
  // Nor does it write more than the player may, calling for them.
  status = increment_as_plugin("", "rank", 5, &out, &ada);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stats(ada).values().at("rank"), 16);
}

// Two players claim look-alike names at once, one in Latin and one in Cyrillic letters: one wins.
TEST_P(PlayerDataThroughTheHost, LookAlikeNamesInTwoScriptsRacedForOneWins) {
  for (int round = 0; round < 6; ++round) {
    const Player p1 = player("lx" + std::to_string(round));
    const Player p2 = player("ly" + std::to_string(round));
    const std::string digits = std::to_string(round) + suffix_;
    const std::string latin = "coco" + digits;
    const std::string cyrillic = "\u0441\u043e\u0441\u043e" + digits;  // сосо
    std::latch go(2);
    grpc::Status s1, s2;
    std::thread t1([&] {
      go.arrive_and_wait();
      s1 = set_name(p1, latin);
    });
    std::thread t2([&] {
      go.arrive_and_wait();
      s2 = set_name(p2, cyrillic);
    });
    t1.join();
    t2.join();
    ASSERT_NE(s1.ok(), s2.ok()) << s1.error_message() << " / " << s2.error_message();
    const grpc::Status& lost = s1.ok() ? s2 : s1;
    EXPECT_EQ(lost.error_code(), grpc::StatusCode::ALREADY_EXISTS) << lost.error_message();
    EXPECT_CONTAINS(lost.error_message(), "which it is too like");
  }
  const Player mixed = player("mixed");
  grpc::Status status = set_name(mixed, "\u0430dmin" + suffix_);  // Cyrillic а among Latin letters
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(status.error_message(), "mixes scripts whose letters look alike");
  status = set_name(mixed, "\uff21\uff24\uff2d\uff29\uff2e");  // full-width ADMIN
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(status.error_message(), "is reserved");
  // Bytes that are not UTF-8 do not even parse as the request (a proto3 string); the domain's own
  // check is unit-tested.
  status = set_name(mixed, "Ad\xc3\x28" + suffix_);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(status.error_message(), "does not parse");

  // CJK names are names; a name typed with a combining accent is stored composed and listed by it.
  const Player han = player("han");
  pb::Profile claimed;
  ASSERT_TRUE(set_name(han, "\u5c71\u7530" + suffix_, &claimed).ok());
  const Player clement = player("clement");
  ASSERT_TRUE(set_name(clement, "Cle\u0301ment" + suffix_, &claimed).ok());
  EXPECT_EQ(claimed.display_name(), "Cl\u00e9ment" + suffix_);
  pb::ListPlayersRequest request;
  request.set_prefix("CLE\u0301MENT" + suffix_);
  pb::ListPlayersReply page;
  ASSERT_TRUE(call(han, &pb::PlayerData::Stub::ListPlayers, request, &page).ok());
  ASSERT_EQ(page.players_size(), 1);
  EXPECT_EQ(page.players(0).player_id(), clement.id);
}

TEST_P(PlayerDataThroughTheHost, APlayersWritesAreLimitedPerMinute) {
  start("max_writes_per_player_per_minute = 5\n");
  const Player ada = player("ada");
  const Player bob = player("bob");
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(increment(ada, "wins", 1).ok()) << i;
  pb::Stats out;
  const grpc::Status status = increment(ada, "wins", 1, &out);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(
      status.error_message(),
      "a player makes at most 5 writes a minute (max_writes_per_player_per_minute); nothing was changed, "
      "retry within a minute");
  EXPECT_EQ(write_slot(ada, "main", "x", std::nullopt).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(stats(ada).values().at("wins"), 5) << "reads go on, and the refused write changed nothing";
  EXPECT_TRUE(increment(bob, "wins", 1).ok()) << "another player has a budget of their own";
}

INSTANTIATE_TEST_SUITE_P(Backends, PlayerDataThroughTheHost, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
