// The world-state plugin in the real host through real gRPC streams: ticks and deltas as a game
// client decodes them, the area of interest, ownership and input validation, a reload under live
// streams, and rooms across hosts sharing PostgreSQL and Redis (the servers `tools/gv services`
// starts), with the owner of a room killed.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "domain/room.hpp"
#include "domain/wire.hpp"
#include "eventually.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "gameverse/world/v1/world.grpc.pb.h"
#include "host_process.hpp"
#include "run_command.hpp"
#include "sign_up.hpp"
#include "test_servers.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::world::v1;
using world::ClientWorld;

constexpr const char* kOperatorToken = "world-test-operator-token-000001";

std::string random_suffix() {
  std::random_device random;
  char out[17];
  std::snprintf(out, sizeof out, "%08x%08x", random(), random());
  return out;
}

std::string host_config(const std::string& data_dir, const std::string& world_config,
                        const std::string& backends = "") {
  return "[host]\nwatch = false\ndata_dir = \"" + data_dir + "\"\n" + backends + "[admin]\ntoken = \"" +
         kOperatorToken +
         "\"\n[[plugin]]\nname = \"world-state\"\npath = \"" GV_PLUGIN_DIR
         "/world-state.so\"\n[plugin.config]\n" +
         world_config + "[plugin.access]\n\"/gameverse.world.v1.World/Play\" = \"public\"\n";
}

// A game client: joins, acknowledges every frame it applies, and keeps what it saw.
class PlayClient {
 public:
  PlayClient(const HostProcess& host, const std::string& room, pb::Vec3 view = {},
             const std::string& token = "")
      : stub_(pb::World::NewStub(host.channel())) {
    if (!token.empty()) context_.AddMetadata("authorization", "Bearer " + token);
    stream_ = stub_->Play(&context_);
    pb::ClientMessage join;
    join.mutable_join()->set_room_id(room);
    *join.mutable_join()->mutable_view() = view;
    write(join);
    reader_ = std::thread([this] { read(); });
  }
  ~PlayClient() {
    context_.TryCancel();
    reader_.join();
  }

  bool write(const pb::ClientMessage& m) {
    std::lock_guard lock(write_mu_);
    return stream_->Write(m);
  }
  void input(uint64_t seq, const std::function<void(pb::Input&)>& fill) {
    pb::ClientMessage m;
    m.mutable_input()->set_seq(seq);
    fill(*m.mutable_input());
    write(m);
  }
  void spawn(uint64_t seq, float x, float y, const std::string& type = "avatar") {
    input(seq, [&](pb::Input& in) {
      in.mutable_spawn()->set_type(type);
      in.mutable_spawn()->mutable_position()->set_x(x);
      in.mutable_spawn()->mutable_position()->set_y(y);
    });
  }
  void move(uint64_t seq, uint64_t id, float x, float y) {
    input(seq, [&](pb::Input& in) {
      in.mutable_move()->set_entity_id(id);
      in.mutable_move()->mutable_position()->set_x(x);
      in.mutable_move()->mutable_position()->set_y(y);
    });
  }

  struct Seen {
    uint64_t tick;
    bool snapshot;
  };
  std::vector<Seen> frames() {
    std::lock_guard lock(mu_);
    return frames_;
  }
  std::vector<pb::InputRejected> rejections() {
    std::lock_guard lock(mu_);
    return rejections_;
  }
  std::map<uint64_t, ClientWorld::View> entities() {
    std::lock_guard lock(mu_);
    return world_.entities();
  }
  std::string client_id() {
    std::lock_guard lock(mu_);
    return joined_.client_id();
  }
  size_t joins() {
    std::lock_guard lock(mu_);
    return joins_;
  }
  uint64_t tick() {
    std::lock_guard lock(mu_);
    return world_.tick();
  }
  std::optional<grpc::Status> ended() {
    std::lock_guard lock(mu_);
    return ended_;
  }
  uint64_t unknown_bases() {
    std::lock_guard lock(mu_);
    return unknown_bases_;
  }
  // The entity this client owns with this type, once it has seen it.
  uint64_t own(const std::string& type) {
    for (const auto& [id, v] : entities()) {
      if (v.owner == client_id() && v.type == type) return id;
    }
    return 0;
  }
  int32_t quantized(float metres) const { return static_cast<int32_t>(std::lround(metres * 100)); }

 private:
  void read() {
    pb::ServerMessage m;
    while (stream_->Read(&m)) {
      std::optional<uint64_t> ack;
      bool resnap = false;
      {
        std::lock_guard lock(mu_);
        if (m.has_joined()) {
          joined_ = m.joined();
          ++joins_;
        } else if (m.has_input_rejected()) {
          rejections_.push_back(m.input_rejected());
        } else {
          const auto applied = world_.apply(m.SerializeAsString());
          if (applied == ClientWorld::Applied::kSnapshot || applied == ClientWorld::Applied::kDelta) {
            frames_.push_back({world_.tick(), applied == ClientWorld::Applied::kSnapshot});
            ack = world_.tick();
          } else if (applied == ClientWorld::Applied::kUnknownBase) {
            ++unknown_bases_;
            resnap = true;
          }
        }
      }
      pb::ClientMessage out;
      if (ack) {
        out.mutable_ack()->set_tick(*ack);
        write(out);
      } else if (resnap) {
        out.mutable_request_snapshot();
        write(out);
      }
    }
    std::lock_guard lock(mu_);
    ended_ = stream_->Finish();
  }

  std::unique_ptr<pb::World::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<pb::ClientMessage, pb::ServerMessage>> stream_;
  std::mutex write_mu_;
  std::mutex mu_;
  ClientWorld world_;
  pb::Joined joined_;
  size_t joins_ = 0;
  std::vector<Seen> frames_;
  std::vector<pb::InputRejected> rejections_;
  uint64_t unknown_bases_ = 0;
  std::optional<grpc::Status> ended_;
  std::thread reader_;
};

void reload_world(const HostProcess& host) {
  auto admin = gameverse::host::v1::PluginAdmin::NewStub(host.channel());
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
  gameverse::host::v1::ReloadPluginRequest request;
  request.set_name("world-state");
  request.set_force(true);
  gameverse::host::v1::OperationResult result;
  const grpc::Status status = admin->ReloadPlugin(&context, request, &result);
  ASSERT_TRUE(status.ok()) << status.error_message();
}

class WorldOnOneHost : public ::testing::Test {
 protected:
  void SetUp() override { host_ = std::make_unique<HostProcess>(host_config(dir_.path().string(), config_)); }
  void TearDown() override {
    if (HasFailure() && host_) std::cerr << "host log:\n" << host_->log();
  }
  void reload() { reload_world(*host_); }
  std::string room() const { return "room-" + suffix_; }

  std::string config_ = "tick_hz = 10\n";
  TempDir dir_;
  std::string suffix_ = random_suffix();
  std::unique_ptr<HostProcess> host_;
};

TEST_F(WorldOnOneHost, ClientsGetASnapshotThenDeltasOfEveryMoveTickAfterTick) {
  PlayClient alice(*host_, room());
  PlayClient bob(*host_, room());
  ASSERT_TRUE(eventually([&] { return !alice.frames().empty() && !bob.frames().empty(); }));
  EXPECT_TRUE(alice.frames().front().snapshot);
  alice.spawn(1, 1, 2);
  ASSERT_TRUE(eventually([&] { return alice.own("avatar") != 0; }));
  const uint64_t id = alice.own("avatar");
  ASSERT_TRUE(eventually([&] { return bob.entities().contains(id); }));
  EXPECT_EQ(bob.entities().at(id).owner, alice.client_id());
  for (int i = 1; i <= 10; ++i) {
    alice.move(1 + i, id, 1 + i, 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  ASSERT_TRUE(eventually([&] { return bob.entities().at(id).position.x == bob.quantized(11); }));
  EXPECT_EQ(bob.entities().at(id).position.y, bob.quantized(2));
  // Ticks rise one by one.
  const auto frames = bob.frames();
  for (size_t i = 1; i < frames.size(); ++i) EXPECT_EQ(frames[i].tick, frames[i - 1].tick + 1) << i;
  EXPECT_EQ(bob.unknown_bases(), 0u);
  EXPECT_TRUE(alice.rejections().empty());
}

TEST_F(WorldOnOneHost, AClientMovesOnlyItsOwnAndBadInputIsRefusedWhileTheRoomGoesOn) {
  PlayClient alice(*host_, room());
  PlayClient mallory(*host_, room());
  ASSERT_TRUE(eventually([&] { return !mallory.frames().empty(); }));
  alice.spawn(1, 0, 0);
  ASSERT_TRUE(eventually([&] { return mallory.entities().size() == 1; }));
  const uint64_t id = mallory.entities().begin()->first;
  mallory.move(7, id, 5, 5);
  mallory.move(8, id, std::nanf(""), 0);
  mallory.input(9, [](pb::Input& in) { in.mutable_spawn()->set_type(std::string(100, 'x')); });
  mallory.input(10, [](pb::Input&) {});
  mallory.input(11, [&](pb::Input& in) { in.mutable_despawn()->set_entity_id(id); });
  mallory.input(12, [&](pb::Input& in) {
    in.mutable_set_component()->set_entity_id(id);
    in.mutable_set_component()->mutable_component()->set_name("hp");
    in.mutable_set_component()->mutable_component()->set_value("0");
  });
  ASSERT_TRUE(eventually([&] { return mallory.rejections().size() == 6; }));
  std::map<uint64_t, std::string> fields;
  for (const auto& r : mallory.rejections()) fields[r.seq()] = r.field();
  EXPECT_EQ(fields[7], "input.move.entity_id");
  EXPECT_EQ(fields[8], "input.move.position");
  EXPECT_EQ(fields[9], "input.spawn.type");
  EXPECT_EQ(fields[10], "input.action");
  EXPECT_EQ(fields[11], "input.despawn.entity_id");
  EXPECT_EQ(fields[12], "input.set_component.entity_id");
  EXPECT_EQ(mallory.entities().at(id).position.x, 0);
  EXPECT_TRUE(mallory.entities().at(id).components.empty());
  // The room goes on, and the stream with it.
  const uint64_t tick = mallory.tick();
  ASSERT_TRUE(eventually([&] { return mallory.tick() > tick + 3; }));
  EXPECT_FALSE(mallory.ended());
}

TEST_F(WorldOnOneHost, AJoinWithABadRoomIdEndsTheStreamNamingTheField) {
  PlayClient bad(*host_, "no spaces allowed");
  ASSERT_TRUE(eventually([&] { return bad.ended().has_value(); }));
  EXPECT_EQ(bad.ended()->error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.ended()->error_message().find("join.room_id"), std::string::npos);
}

TEST_F(WorldOnOneHost, AClientSeesOnlyWhatIsWithinItsAreaOfInterest) {
  PlayClient near(*host_, room());
  pb::Vec3 far_view;
  far_view.set_x(5000);
  PlayClient far(*host_, room(), far_view);
  PlayClient mover(*host_, room());
  ASSERT_TRUE(eventually([&] { return !mover.frames().empty() && !far.frames().empty(); }));
  mover.spawn(1, 10, 0);
  ASSERT_TRUE(eventually([&] { return near.entities().size() == 1; }));
  const uint64_t id = near.entities().begin()->first;
  const uint64_t tick = far.tick();
  ASSERT_TRUE(eventually([&] { return far.tick() > tick + 3; }));
  EXPECT_TRUE(far.entities().empty());
  mover.move(2, id, 4990, 0);
  ASSERT_TRUE(eventually([&] { return far.entities().contains(id); }));
  ASSERT_TRUE(eventually([&] { return near.entities().empty(); }));
  // The mover's own view follows its entity.
  ASSERT_TRUE(eventually([&] { return mover.entities().contains(id); }));
}

// Inputs keep coming while the plugin reloads twice: every one is applied, no stream drops, and
// the ticks the clients see go on without a repeat and with at most two ticks unseen.
TEST_F(WorldOnOneHost, AReloadUnderLiveStreamsLosesNothingAndTicksGoOn) {
  PlayClient alice(*host_, room());
  PlayClient bob(*host_, room());
  alice.spawn(1, 0, 0);
  ASSERT_TRUE(eventually([&] { return alice.own("avatar") != 0; }));
  const uint64_t id = alice.own("avatar");
  std::atomic<int> sent = 0;
  std::atomic<bool> stop = false;
  std::thread mover([&] {
    for (int i = 1; !stop; ++i) {
      alice.move(100 + i, id, static_cast<float>(i) * 0.5f, 0);
      sent = i;
      std::this_thread::sleep_for(std::chrono::milliseconds(120));  // one input per tick at most
    }
  });
  ASSERT_TRUE(eventually([&] { return sent > 5; }));
  reload();
  ASSERT_TRUE(eventually([&] { return sent > 15; }));
  reload();
  ASSERT_TRUE(eventually([&] { return sent > 25; }));
  stop = true;
  mover.join();
  const float last = static_cast<float>(sent.load()) * 0.5f;
  ASSERT_TRUE(eventually([&] {
    return bob.entities().contains(id) && bob.entities().at(id).position.x == bob.quantized(last);
  })) << "bob sees x = "
      << (bob.entities().contains(id) ? bob.entities().at(id).position.x : -1);
  EXPECT_TRUE(alice.rejections().empty()) << alice.rejections().front().reason();
  EXPECT_FALSE(alice.ended().has_value());
  EXPECT_FALSE(bob.ended().has_value());
  // The room's own clock goes on: its tick numbers rise without a repeat or a restart, and every
  // frame after the first applied as a delta on what the client held (no stream joined anew).
  // How many ticks a client did not see while its stream moved depends on how fast the machine
  // reloads (sanitizer builds are far slower), so it is not asserted.
  for (PlayClient* c : {&alice, &bob}) {
    const auto frames = c->frames();
    ASSERT_GT(frames.size(), 20u);
    for (size_t i = 1; i < frames.size(); ++i) {
      EXPECT_GT(frames[i].tick, frames[i - 1].tick) << "a tick seen twice or going back at frame " << i;
      EXPECT_FALSE(frames[i].snapshot) << "the stream was joined anew at frame " << i;
    }
    EXPECT_EQ(c->unknown_bases(), 0u);
  }
  EXPECT_NE(host_->log().find("generation"), std::string::npos);
}

// An area of interest that would span too many grid cells (or cells far larger than it) is refused
// at start, naming the keys.
TEST(WorldConfig, AnAreaOfInterestOutOfProportionToItsGridIsRefusedNamingTheKeys) {
  TempDir dir;
  std::string log;
  try {
    HostProcess host(host_config(dir.path().string(), "aoi_radius_m = 10000\naoi_cell_m = 1\n"));
    log = host.log();
  } catch (const std::exception& e) {
    log = e.what();
  }
  EXPECT_NE(log.find("aoi_radius_m must be at most 64 times aoi_cell_m"), std::string::npos) << log;
}

// A reload that fails after the rooms were handed over (the next generation refuses to start)
// leaves the old generation with its rooms: they tick on, and the stream with them.
TEST(WorldReload, AReloadThatFailsLeavesTheRoomsTickingWhereTheyWere) {
  TempDir dir;
  const std::string good = host_config(dir.path().string(), "tick_hz = 10\n");
  std::string watched = good;
  watched.replace(watched.find("watch = false"), 13, "watch = true");
  HostProcess host(watched);
  const std::string room = "room-" + random_suffix();
  PlayClient alice(host, room);
  alice.spawn(1, 1, 1);
  ASSERT_TRUE(eventually([&] { return alice.own("avatar") != 0; }));
  const uint64_t id = alice.own("avatar");
  std::string bad = watched;
  bad.replace(bad.find("tick_hz = 10\n"), 13, "tick_hz = 10\naoi_radius_m = 10000\naoi_cell_m = 1\n");
  host.write_config(bad);
  ASSERT_TRUE(
      eventually([&] { return host.log().find("aoi_radius_m must be at most 64") != std::string::npos; },
                 std::chrono::seconds(20)))
      << host.log();
  const uint64_t tick = alice.tick();
  ASSERT_TRUE(eventually([&] { return alice.tick() > tick + 20; }, std::chrono::seconds(20))) << host.log();
  alice.move(2, id, 3, 3);
  ASSERT_TRUE(eventually([&] { return alice.entities().at(id).position.x == alice.quantized(3); }))
      << host.log();
  EXPECT_FALSE(alice.ended().has_value());
}

// A client that does not read its stream while its frames are large fills the host's write queue
// for it: the stream is finished RESOURCE_EXHAUSTED (it is told to join again) instead of hanging,
// and the room goes on for the others.
TEST(WorldBackPressure, AClientThatDoesNotReadIsFinishedAsTooSlow) {
  TempDir dir;
  HostProcess host(host_config(
      dir.path().string(), "tick_hz = 60\nmax_unacked_frames = 1000\nsend_budget_bytes_per_s = 100000000\n"));
  const std::string room = "room-" + random_suffix();
  auto stub = pb::World::NewStub(host.channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(180));
  auto stream = stub->Play(&context);
  pb::ClientMessage join;
  join.mutable_join()->set_room_id(room);
  ASSERT_TRUE(stream->Write(join));
  PlayClient mover(host, room);
  ASSERT_TRUE(eventually([&] { return !mover.frames().empty(); }));
  // Big entities: every frame to a client that acknowledges nothing holds them all, whole.
  for (uint64_t seq = 1; seq <= 64; ++seq) {
    mover.input(seq, [](pb::Input& in) {
      in.mutable_spawn()->set_type("crate");
      for (int c = 0; c < 16; ++c) {
        pb::Component* component = in.mutable_spawn()->add_components();
        component->set_name("c" + std::to_string(c));
        component->set_value(std::string(1000, static_cast<char>('a' + c)));
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(eventually([&] { return mover.entities().size() > 32; }));
  // It does not read until the host gave up on it (however long a slow build takes to fill the
  // queue), then reads what is there to the end of the stream.
  ASSERT_TRUE(eventually([&] { return host.log().find("did not read its frames") != std::string::npos; },
                         std::chrono::seconds(120)));
  pb::ServerMessage m;
  while (stream->Read(&m)) {
  }
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_NE(status.error_message().find("too slowly"), std::string::npos) << status.error_message();
  const uint64_t tick = mover.tick();
  ASSERT_TRUE(eventually([&] { return mover.tick() > tick + 10; }));
  EXPECT_FALSE(mover.ended().has_value());
}

// A signed-in account holds at most max_streams_per_account Play streams on a host (and so opens
// at most that many rooms there); a stream that ends gives its place back.
TEST(WorldAccounts, AnAccountHoldsAtMostMaxStreamsPerAccountStreams) {
  TempDir dir;
  HostProcess host("[host]\nwatch = false\ndata_dir = \"" + dir.path().string() + "\"\n[admin]\ntoken = \"" +
                   kOperatorToken +
                   "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
                   "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n"
                   "[[plugin]]\nname = \"world-state\"\npath = \"" GV_PLUGIN_DIR
                   "/world-state.so\"\n[plugin.config]\nmax_streams_per_account = 2\n");
  auto auth = gameverse::auth::v1::Auth::NewStub(host.channel());
  const gameverse::auth::v1::Session session = sign_up(*auth, "player-" + random_suffix());
  ASSERT_FALSE(session.access_token().empty());
  const std::string token = session.access_token();
  const std::string suffix = random_suffix();
  auto first = std::make_unique<PlayClient>(host, "a-" + suffix, pb::Vec3{}, token);
  PlayClient second(host, "b-" + suffix, pb::Vec3{}, token);
  ASSERT_TRUE(eventually([&] { return !first->frames().empty() && !second.frames().empty(); })) << host.log();
  PlayClient third(host, "c-" + suffix, pb::Vec3{}, token);
  ASSERT_TRUE(eventually([&] { return third.ended().has_value(); }));
  EXPECT_EQ(third.ended()->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.ended()->error_message().find("max_streams_per_account"), std::string::npos);
  first.reset();
  ASSERT_TRUE(eventually([&] {
    PlayClient again(host, "d-" + suffix, pb::Vec3{}, token);
    return eventually([&] { return !again.frames().empty() || again.ended().has_value(); }) &&
           !again.frames().empty();
  }));
}

// A client leaves (its stream ends) between ticks: the others see its entities removed.
TEST_F(WorldOnOneHost, WhenAClientLeavesTheOthersSeeItsEntitiesRemoved) {
  auto alice = std::make_unique<PlayClient>(*host_, room());
  PlayClient bob(*host_, room());
  alice->spawn(1, 1, 1);
  ASSERT_TRUE(eventually([&] { return bob.entities().size() == 1; }));
  alice.reset();
  ASSERT_TRUE(eventually([&] { return bob.entities().empty(); }))
      << "bob still sees the entity of a client that left";
  EXPECT_FALSE(bob.ended().has_value());
}

// The last client leaves and another joins at once, again and again: the room is closed (stored
// and its lease released) by one and taken again by the other, one after the other, and never
// dropped from under the join.
TEST_F(WorldOnOneHost, ALeaveAndAJoinAtOnceNeverDropTheRoomFromUnderTheJoin) {
  host_.reset();
  host_ = std::make_unique<HostProcess>(host_config(dir_.path().string(), "tick_hz = 20\nlease_ms = 300\n"));
  auto c = std::make_unique<PlayClient>(*host_, room());
  ASSERT_TRUE(eventually([&] { return !c->frames().empty(); }));
  for (int i = 0; i < 25; ++i) {
    c->spawn(1, 0, 0);
    ASSERT_TRUE(eventually([&] { return c->frames().size() > 3 || c->ended().has_value(); }));
    ASSERT_FALSE(c->ended().has_value()) << i << ": " << c->ended()->error_message();
    c = std::make_unique<PlayClient>(*host_, room());
    ASSERT_TRUE(eventually([&] { return !c->frames().empty() || c->ended().has_value(); }));
    ASSERT_FALSE(c->ended().has_value()) << i << ": " << c->ended()->error_message();
  }
  EXPECT_EQ(host_->log().find("stopped simulating"), std::string::npos) << host_->log();
}

// Several hosts on one PostgreSQL and one Redis.
class WorldAcrossHosts : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* pg = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
    if (pg == nullptr || redis_url().empty())
      GTEST_SKIP() << "needs `tools/gv services` (PostgreSQL and Redis)";
    backends_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + std::string(pg) +
                "\"\n[redis]\nurl = \"" + redis_url() +
                "\"\n[cache]\nbackend = \"redis\"\n[pubsub]\nbackend = \"redis\"\n";
  }
  std::unique_ptr<HostProcess> start(TempDir& dir) {
    return std::make_unique<HostProcess>(host_config(dir.path().string(), config_, backends_));
  }
  // The version of the room's stored record (0: none), read from PostgreSQL.
  int64_t stored_version(const std::string& room) const {
    const CommandRun run = run_command(
        "psql '" + std::string(std::getenv("GAMEVERSE_TEST_POSTGRES_URL")) +
        "' -tAc \"select version from gv_objects where collection = 'rooms' and key = convert_to('" + room +
        "', 'UTF8')\"");
    EXPECT_EQ(run.exit_code, 0) << run.output;
    return run.output.empty() || run.output == "\n" ? 0 : std::stoll(run.output);
  }
  std::string config_ = "tick_hz = 10\nlease_ms = 900\nsnapshot_interval_ms = 200\n";
  std::string backends_;
  std::string room_ = "shared-" + random_suffix();
};

TEST_F(WorldAcrossHosts, AClientOnAnotherHostIsServedByTheOwnerAndTakesTheRoomWhenTheOwnerDies) {
  TempDir dir_a, dir_b;
  auto a = start(dir_a);
  auto b = start(dir_b);
  auto on_a = std::make_unique<PlayClient>(*a, room_);
  ASSERT_TRUE(eventually([&] { return !on_a->frames().empty(); }));  // a owns the room
  PlayClient on_b(*b, room_);
  ASSERT_TRUE(eventually([&] { return !on_b.frames().empty(); }, std::chrono::seconds(15))) << b->log();
  on_a->spawn(1, 1, 1, "tower");
  on_b.spawn(1, 2, 2, "scout");
  ASSERT_TRUE(eventually([&] { return on_b.own("scout") != 0 && on_b.entities().size() == 2; }));
  ASSERT_TRUE(eventually([&] { return on_a->entities().size() == 2; }));
  const uint64_t scout = on_b.own("scout");
  // The relayed client moves its own entity through the owner; both see it.
  on_b.move(2, scout, 3, 4);
  ASSERT_TRUE(eventually([&] { return on_a->entities().at(scout).position.y == on_a->quantized(4); }));
  ASSERT_TRUE(eventually([&] { return on_b.entities().at(scout).position.y == on_b.quantized(4); }));
  EXPECT_EQ(b->log().find("took room"), std::string::npos) << "b relays, a owns the room";
  // Once a snapshot with the moved scout is stored, kill the owner.
  const uint64_t tick_before = on_b.tick();
  const int64_t version_seen = stored_version(room_);
  ASSERT_TRUE(eventually([&] { return stored_version(room_) > version_seen; }));
  const size_t joins_before = on_b.joins();
  on_a.reset();
  a->signal(SIGKILL);
  a->stop();
  // b takes the room from its last snapshot: the client on b is joined again, gets a snapshot and
  // then ticks again.
  ASSERT_TRUE(eventually([&] { return on_b.joins() > joins_before; }, std::chrono::seconds(20))) << b->log();
  ASSERT_TRUE(eventually(
      [&] {
        const auto frames = on_b.frames();
        size_t after = 0;
        bool snap = false;
        for (const auto& f : frames) {
          if (f.snapshot && f.tick > 0) snap = true;
          if (snap) ++after;
        }
        return snap && after > 5;
      },
      std::chrono::seconds(20)));
  EXPECT_FALSE(on_b.ended().has_value());
  const auto seen = on_b.entities();
  ASSERT_TRUE(seen.contains(scout)) << "the snapshot holds the scout";
  EXPECT_EQ(seen.at(scout).position.y, on_b.quantized(4));
  // Ticks go on from the stored snapshot, stored after tick_before: they do not start again low.
  uint64_t taken_at = 0;  // the tick of the snapshot the room was taken over with
  for (const auto& f : on_b.frames()) {
    if (f.snapshot) taken_at = f.tick;
  }
  EXPECT_GT(taken_at, tick_before) << "ticks go on from the stored snapshot";
  // The room lives on b: the client still moves.
  on_b.move(3, scout, 7, 7);
  ASSERT_TRUE(eventually([&] { return on_b.entities().at(scout).position.x == on_b.quantized(7); }));
  EXPECT_NE(b->log().find("took room " + room_), std::string::npos);
}

// A host that stops (SIGTERM) stores its rooms as they are and gives up their leases: another host
// takes the room with the last move in it, though no periodic snapshot was due.
TEST_F(WorldAcrossHosts, AHostThatStopsHandsItsRoomOverWithNothingLost) {
  config_ = "tick_hz = 10\nlease_ms = 900\nsnapshot_interval_ms = 3600000\n";
  TempDir dir_a, dir_b;
  auto a = start(dir_a);
  auto b = start(dir_b);
  auto on_a = std::make_unique<PlayClient>(*a, room_);
  ASSERT_TRUE(eventually([&] { return !on_a->frames().empty(); }));
  PlayClient on_b(*b, room_);
  on_b.spawn(1, 2, 2, "scout");
  ASSERT_TRUE(eventually([&] { return on_b.own("scout") != 0; }, std::chrono::seconds(15))) << b->log();
  const uint64_t scout = on_b.own("scout");
  on_b.move(2, scout, 9, 9);
  ASSERT_TRUE(eventually([&] { return on_b.entities().at(scout).position.x == on_b.quantized(9); }));
  const size_t joins_before = on_b.joins();
  on_a.reset();
  EXPECT_EQ(a->stop(), 0);
  ASSERT_TRUE(eventually([&] { return on_b.joins() > joins_before; }, std::chrono::seconds(20))) << b->log();
  ASSERT_TRUE(
      eventually([&] { return on_b.frames().back().snapshot == false && on_b.entities().contains(scout); },
                 std::chrono::seconds(20)));
  EXPECT_EQ(on_b.entities().at(scout).position.x, on_b.quantized(9));
  EXPECT_FALSE(on_b.ended().has_value());
}

// Reloads on the relaying host and on the owner: the relayed client's stream stays, its frames go
// on and its inputs still reach the room.
TEST_F(WorldAcrossHosts, ARelayedClientPlaysOnThroughReloadsOfBothHosts) {
  TempDir dir_a, dir_b;
  auto a = start(dir_a);
  auto b = start(dir_b);
  PlayClient on_a(*a, room_);
  ASSERT_TRUE(eventually([&] { return !on_a.frames().empty(); }));
  PlayClient on_b(*b, room_);
  on_b.spawn(1, 2, 2, "scout");
  ASSERT_TRUE(eventually([&] { return on_b.own("scout") != 0; }, std::chrono::seconds(15))) << b->log();
  const uint64_t scout = on_b.own("scout");
  float x = 2;
  uint64_t seq = 1;
  for (const HostProcess* host : {b.get(), a.get()}) {
    reload_world(*host);
    const uint64_t tick = on_b.tick();
    ASSERT_TRUE(eventually([&] { return on_b.tick() > tick + 5; }, std::chrono::seconds(15))) << b->log();
    x += 1;
    on_b.move(++seq, scout, x, 2);
    ASSERT_TRUE(eventually([&] {
      return on_a.entities().contains(scout) && on_a.entities().at(scout).position.x == on_a.quantized(x);
    })) << a->log();
    // Past the wait for streams that moved (10 s): the relayed client is still in the room.
    std::this_thread::sleep_for(std::chrono::seconds(11));
    ASSERT_TRUE(on_a.entities().contains(scout)) << "the relayed client's scout went\n" << a->log();
    ASSERT_TRUE(on_b.entities().contains(scout)) << "the relayed client's scout went\n" << b->log();
    x += 1;
    on_b.move(++seq, scout, x, 2);
    ASSERT_TRUE(eventually([&] {
      return on_a.entities().contains(scout) && on_a.entities().at(scout).position.x == on_a.quantized(x);
    })) << a->log();
  }
  EXPECT_FALSE(on_b.ended().has_value());
  EXPECT_FALSE(on_a.ended().has_value());
  const auto frames = on_b.frames();
  for (size_t i = 1; i < frames.size(); ++i) EXPECT_GT(frames[i].tick, frames[i - 1].tick) << i;
  EXPECT_EQ(b->log().find("took room"), std::string::npos) << "a owned the room throughout";
}

// A room left by its last client with nothing in it leaves no record in the store.
TEST_F(WorldAcrossHosts, ARoomLeftEmptyLeavesNoRecordBehind) {
  TempDir dir;
  auto a = start(dir);
  auto c = std::make_unique<PlayClient>(*a, room_);
  c->spawn(1, 0, 0);
  ASSERT_TRUE(eventually([&] { return c->entities().size() == 1; }));
  ASSERT_TRUE(eventually([&] { return stored_version(room_) > 0; }));
  c.reset();
  ASSERT_TRUE(eventually([&] { return stored_version(room_) == 0; })) << a->log();
}

// After a take-over, what the clients that never came back owned is despawned after the grace;
// what the client that came back owns stays.
TEST_F(WorldAcrossHosts, AfterATakeOverEntitiesOfClientsThatDidNotComeBackGo) {
  config_ += "orphan_grace_ms = 1000\n";
  TempDir dir_a, dir_b;
  auto a = start(dir_a);
  auto b = start(dir_b);
  auto on_a = std::make_unique<PlayClient>(*a, room_);
  ASSERT_TRUE(eventually([&] { return !on_a->frames().empty(); }));
  PlayClient on_b(*b, room_);
  on_a->spawn(1, 1, 1, "tower");
  on_b.spawn(1, 2, 2, "scout");
  ASSERT_TRUE(eventually([&] { return on_b.entities().size() == 2; }, std::chrono::seconds(15))) << b->log();
  const uint64_t scout = on_b.own("scout");
  const int64_t version_seen = stored_version(room_);
  ASSERT_TRUE(eventually([&] { return stored_version(room_) > version_seen; }));
  on_a.reset();
  a->signal(SIGKILL);
  a->stop();
  ASSERT_TRUE(eventually([&] { return b->log().find("took room " + room_) != std::string::npos; },
                         std::chrono::seconds(20)));
  ASSERT_TRUE(eventually([&] { return on_b.entities().size() == 1; }, std::chrono::seconds(20))) << b->log();
  EXPECT_TRUE(on_b.entities().contains(scout));
}

// Anyone who can publish on Redis can forge a relay message, but a host's message speaks only for
// the clients that host joined: a forged despawn of a local client's entity is ignored.
TEST_F(WorldAcrossHosts, ARelayedMessageSpeaksOnlyForTheClientsItsHostJoined) {
  TempDir dir;
  auto a = start(dir);
  PlayClient alice(*a, room_);
  alice.spawn(1, 1, 1);
  ASSERT_TRUE(eventually([&] { return alice.own("avatar") != 0; }));
  const uint64_t id = alice.own("avatar");
  // The owner's host id, from the room's lease ("<host id>:<epoch>").
  const std::string cli = "redis-cli -u '" + redis_url() + "' ";
  const CommandRun key = run_command(cli + "--scan --pattern '*room-owner/" + room_ + "'");
  ASSERT_EQ(key.exit_code, 0) << key.output;
  ASSERT_FALSE(key.output.empty());
  const CommandRun lease = run_command(cli + "GET '" + key.output.substr(0, key.output.find('\n')) + "'");
  const std::string host_id = lease.output.substr(0, lease.output.find_first_of(":\n"));
  ASSERT_EQ(host_id.size(), 32u) << lease.output;
  // gameverse.world.records.v1.Relay{from_host, room_id, items: [{client_id, client_message}]}.
  pb::ClientMessage despawn;
  despawn.mutable_input()->set_seq(99);
  despawn.mutable_input()->mutable_despawn()->set_entity_id(id);
  std::string item, relay;
  world::wire::bytes_field(item, 1, alice.client_id());
  world::wire::bytes_field(item, 2, despawn.SerializeAsString());
  world::wire::bytes_field(relay, 1, "forger");
  world::wire::bytes_field(relay, 2, room_);
  world::wire::bytes_field(relay, 3, item);
  TempDir files;
  const std::string payload = (files.path() / "relay.bin").string();
  {
    std::ofstream out(payload, std::ios::binary);
    out << relay;
  }
  const CommandRun published =
      run_command(cli + "-x PUBLISH 'gameverse:topic:gameverse.world.v1.host." + host_id + "' < " + payload);
  ASSERT_NE(published.output.find('1'), std::string::npos) << "no host took it: " << published.output;
  const uint64_t tick = alice.tick();
  ASSERT_TRUE(eventually([&] { return alice.tick() > tick + 10; }));
  EXPECT_TRUE(alice.entities().contains(id)) << "a forged relay message despawned a local client's entity";
}

}  // namespace
}  // namespace gameverse::testing
