// gameverse.world.v1.World: rooms ticking on host timers, one movable bidi stream per client, and
// rooms owned by one host at a time (a lease in the cache) with the clients of other hosts served
// through pub/sub.
#include <time.h>
#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>

#include "domain/room.hpp"
#include "domain/wire.hpp"
#include "gameverse/world/records/v1/records.pb.h"
#include "gameverse/world/v1/world.pb.h"
#include "infrastructure/room_codec.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::world::v1;
namespace rec = gameverse::world::records::v1;
namespace world = gameverse::world;

constexpr const char* kRoomsCollection = "rooms";
constexpr const char* kHostTopicPrefix = "gameverse.world.v1.host.";
// A stream that does not come back after a reload within this long leaves its room.
constexpr int64_t kResumeWaitMs = 10'000;
// A generation that froze its rooms for a reload asks after this long whether the next generation
// took them (see HandOver.handover_id); if it did not start, the rooms go on here.
constexpr int64_t kFreezeLimitMs = 3'000;
// How long the claim on a hand-over is kept in the cache: far longer than any reload.
constexpr int64_t kHandOverClaimMs = 10 * 60'000;
// Room ids share this many locks: a join, a take-over and a close of the same room go one at a
// time, while different rooms settle in parallel.
constexpr size_t kRoomLocks = 64;
// Messages a client may send while its room is handed over, kept for the next generation.
constexpr size_t kHeldPerClient = 64;

std::string random_hex(size_t bytes) {
  std::random_device random;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    const auto b = static_cast<unsigned>(random() & 0xff);
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

bool valid_room_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

std::string lease_key(const std::string& room_id) {
  return "room-owner/" + room_id;
}

std::string handover_key(const std::string& handover_id) {
  return "world-handover/" + handover_id;
}

// A lease's value is "<host id>:<epoch>", one epoch per take of the room, so that a host renews or
// releases only the very lease it took, never a newer one of its own.
std::string host_of(const std::string& lease) {
  return lease.substr(0, lease.find(':'));
}

bool valid_view(const world::Position& view, double max_coordinate_m) {
  for (double v : {view.x, view.y, view.z}) {
    if (!std::isfinite(v) || std::fabs(v) > max_coordinate_m) return false;
  }
  return true;
}

world::Position position_of(const pb::Vec3& v) {
  return {v.x(), v.y(), v.z()};
}

// The input as the domain takes it; nullopt (with the field) when it names no action.
std::optional<world::Input> input_of(const pb::Input& in) {
  world::Input out;
  out.seq = in.seq();
  switch (in.action_case()) {
    case pb::Input::kSpawn:
      out.kind = world::Input::Kind::kSpawn;
      out.type = in.spawn().type();
      out.position = position_of(in.spawn().position());
      for (const auto& c : in.spawn().components()) out.components.emplace_back(c.name(), c.value());
      return out;
    case pb::Input::kMove:
      out.kind = world::Input::Kind::kMove;
      out.entity_id = in.move().entity_id();
      out.position = position_of(in.move().position());
      return out;
    case pb::Input::kDespawn:
      out.kind = world::Input::Kind::kDespawn;
      out.entity_id = in.despawn().entity_id();
      return out;
    case pb::Input::kSetComponent:
      out.kind = world::Input::Kind::kSetComponent;
      out.entity_id = in.set_component().entity_id();
      if (in.set_component().has_component()) {
        out.components.emplace_back(in.set_component().component().name(),
                                    in.set_component().component().value());
      }
      return out;
    case pb::Input::ACTION_NOT_SET: break;
  }
  return std::nullopt;
}

rec::ServerWire rejected(uint64_t seq, const std::string& field, const std::string& reason) {
  rec::ServerWire out;
  pb::InputRejected* r = out.mutable_input_rejected();
  r->set_seq(seq);
  r->set_field(field);
  r->set_reason(reason);
  return out;
}

rec::ServerWire frame_of(const world::Outgoing& frame) {
  // The room wrote a whole ServerMessage; the stream's type takes its body back as bytes.
  rec::ServerWire out;
  world::wire::Reader message(frame.bytes);
  if (message.next()) {
    if (message.field() == rec::ServerWire::kSnapshotFieldNumber)
      out.set_snapshot(std::string(message.bytes()));
    if (message.field() == rec::ServerWire::kDeltaFieldNumber) out.set_delta(std::string(message.bytes()));
  }
  return out;
}

// CPU time of the calling thread: what a tick costs, whatever else the machine runs.
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// The Play streams each account holds on this host (max_streams_per_account).
struct Accounts {
  std::mutex mu;
  std::map<std::string, size_t> streams;
};

// One stream's place in its account's count, given back when the stream is gone.
struct AccountSlot {
  AccountSlot(std::shared_ptr<Accounts> a, std::string id) : accounts(std::move(a)), account(std::move(id)) {}
  ~AccountSlot() {
    std::lock_guard lock(accounts->mu);
    auto it = accounts->streams.find(account);
    if (it != accounts->streams.end() && --it->second == 0) accounts->streams.erase(it);
  }
  std::shared_ptr<Accounts> accounts;
  std::string account;
};

// One client's Play stream.
struct Session {
  enum class Mode { kNew = 1, kJoining, kLocal, kRelayed };
  explicit Session(sdk::ServerStream<rec::ServerWire> s) : stream(std::move(s)) {}
  sdk::ServerStream<rec::ServerWire> stream;
  std::mutex mu;
  Mode mode = Mode::kNew;
  bool ended = false;  // finished, or moved to the next generation: nothing more is written
  bool moved = false;  // moved to the next generation (its client goes on there)
  std::string room_id;
  std::string client_id;
  pb::Vec3 view;
  std::vector<pb::ClientMessage> early;          // sent while the join was being settled
  std::atomic<uint32_t> messages_this_tick = 0;  // inputs, acks and snapshot requests
  std::atomic<int64_t> share_since_ms = 0;       // when its share last started again
  std::shared_ptr<AccountSlot> slot;             // its account's count (authenticated callers)

  // False once the stream cannot take it: then it is finished (a client that reads too slowly
  // for the host's write queue is told so) and the caller drops the client.
  bool write(const rec::ServerWire& message) {
    std::lock_guard lock(mu);
    if (ended) return false;
    if (!stream.write(message)) {
      ended = true;
      stream.finish(sdk::Status(sdk::StatusCode::kResourceExhausted,
                                "the client reads its frames too slowly; join again"));
    }
    return !ended;
  }
  void finish(const sdk::Status& status) {
    std::lock_guard lock(mu);
    if (ended) return;
    ended = true;
    stream.finish(status);
  }
  bool is_ended() {
    std::lock_guard lock(mu);
    return ended;
  }
  bool is_moved() {
    std::lock_guard lock(mu);
    return moved;
  }
};

// What reaches a room between ticks: from its streams, and from clients on other hosts.
struct InboxItem {
  enum class Kind { kInput = 1, kAck, kSnapshot, kJoinRemote, kLeaveRemote };
  Kind kind = Kind::kInput;
  std::string client_id;
  uint64_t tick = 0;
  world::Input input;
  std::string host;  // relayed: the host it came from (empty: a stream of this host)
  world::Position view;
};

// A room this host owns and simulates.
struct RoomHost {
  RoomHost(world::Room r) : room(std::move(r)) {}
  std::mutex mu;  // the room, its sessions and its remote clients
  world::Room room;
  std::map<std::string, std::shared_ptr<Session>> sessions;  // local clients
  struct Remote {
    std::string host;
    int64_t last_heard_ms = 0;
  };
  std::map<std::string, Remote> remote;            // clients of other hosts
  std::map<std::string, int64_t> awaiting_resume;  // clients whose stream moves (reload)
  std::atomic<bool> frozen = false;                // handed over to the next generation
  int64_t frozen_at_ms = 0;
  bool gone = false;  // dropped from this host
  int64_t persisted_at_ms = 0;
  int64_t orphans_due_ms = 0;  // taken over: then the entities of clients not back are despawned
  sdk::Timer timer;

  std::string lease;                        // the value of this take's lease ("<host id>:<epoch>")
  std::atomic<int64_t> lease_until_ms = 0;  // held at least until then; past it the room stops
  std::mutex store_mu;                      // one write of the room's record at a time
  int64_t store_version = 0;                // under store_mu: the record's version (0: none stored)
  bool store_version_unknown = false;       // handed over by a version that did not track it

  std::mutex inbox_mu;
  std::vector<InboxItem> inbox;
  std::map<std::string, std::vector<InboxItem>> held;  // per client, arrived while frozen
};

// A room another host owns, served to this host's clients through it.
struct RelayedRoomState {
  std::string owner_host;
  int64_t last_frame_ms = 0;
  int64_t last_join_sent_ms = 0;
  std::map<std::string, std::shared_ptr<Session>> sessions;
};

class WorldPlugin;

class PlayReader final : public sdk::StreamReader<pb::ClientMessage> {
 public:
  PlayReader(WorldPlugin& plugin, std::shared_ptr<Session> session, std::string principal)
      : plugin_(plugin), session_(std::move(session)), principal_(std::move(principal)) {}
  void on_message(const pb::ClientMessage& message) override;
  void on_half_close() override;
  void on_cancel() override;
  std::optional<std::string> detach() override;

 private:
  WorldPlugin& plugin_;
  std::shared_ptr<Session> session_;
  std::string principal_;
};

world::Limits limits_from(const sdk::Host& host) {
  world::Limits l;
  l.tick_hz = static_cast<uint32_t>(host.config_int("tick_hz"));
  l.position_resolution_mm = static_cast<uint32_t>(host.config_int("position_resolution_mm"));
  l.max_coordinate_m = static_cast<double>(host.config_int("max_coordinate_m"));
  l.aoi_radius_m = static_cast<double>(host.config_int("aoi_radius_m"));
  l.aoi_cell_m = static_cast<double>(host.config_int("aoi_cell_m"));
  l.max_clients = static_cast<size_t>(host.config_int("max_clients_per_room"));
  l.max_entities = static_cast<size_t>(host.config_int("max_entities_per_room"));
  l.max_entities_per_client = static_cast<size_t>(host.config_int("max_entities_per_client"));
  l.max_components_per_entity = static_cast<size_t>(host.config_int("max_components_per_entity"));
  l.max_component_bytes = static_cast<size_t>(host.config_int("max_component_bytes"));
  l.max_queued_inputs = static_cast<size_t>(host.config_int("max_queued_inputs_per_room"));
  l.max_inputs_per_client_per_tick = static_cast<size_t>(host.config_int("max_inputs_per_client_per_tick"));
  l.max_unacked_frames = static_cast<size_t>(host.config_int("max_unacked_frames"));
  l.send_budget_bytes_per_s = static_cast<uint64_t>(host.config_int("send_budget_bytes_per_s"));
  return l;
}

class WorldPlugin final : public sdk::Plugin {
 public:
  explicit WorldPlugin(sdk::InitContext& init)
      : host_(init.host),
        limits_(limits_from(init.host)),
        max_rooms_(static_cast<size_t>(init.host.config_int("max_rooms"))),
        max_streams_per_account_(static_cast<size_t>(init.host.config_int("max_streams_per_account"))),
        orphan_grace_ms_(init.host.config_int("orphan_grace_ms")),
        lease_ms_(init.host.config_int("lease_ms")),
        snapshot_interval_ms_(init.host.config_int("snapshot_interval_ms")),
        ticks_(init.host.counter("gameverse_world_ticks_total", "Room ticks simulated on this host")),
        tick_seconds_(init.host.histogram("gameverse_world_tick_cpu_seconds",
                                          "CPU time one room tick takes: inputs, simulation and every frame",
                                          {}, {0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05})),
        inputs_dropped_(
            init.host.counter("gameverse_world_inputs_dropped_total",
                              "Inputs dropped: a room's queue or a client's share of a tick was full")),
        inputs_rejected_(
            init.host.counter("gameverse_world_inputs_rejected_total", "Inputs refused (InputRejected)")),
        frame_bytes_(init.host.counter("gameverse_world_frame_bytes_total", "Snapshot and Delta bytes sent")),
        rooms_gauge_(init.host.gauge("gameverse_world_rooms", "Rooms this host owns")),
        relay_dropped_(init.host.counter("gameverse_world_relay_publish_failures_total",
                                         "Relay messages between hosts that could not be published")) {
    // The grid's cells a view spans: a radius of many cells makes every frame walk them all, one of
    // a tiny fraction of a cell makes each cell hold far more than is in view.
    if (limits_.aoi_radius_m > 64 * limits_.aoi_cell_m) {
      throw sdk::Error(
          sdk::StatusCode::kInvalidArgument,
          "aoi_radius_m must be at most 64 times aoi_cell_m (a view spans at most 129 x 129 cells)");
    }
    if (limits_.aoi_cell_m > 4 * limits_.aoi_radius_m) {
      throw sdk::Error(sdk::StatusCode::kInvalidArgument, "aoi_cell_m must be at most 4 times aoi_radius_m");
    }
    rec::HandOver handed;
    if (!init.previous_state.empty() &&
        handed.ParseFromArray(init.previous_state.data(), static_cast<int>(init.previous_state.size()))) {
      host_id_ = handed.host_id();
      // The rooms are this generation's only if the previous one did not give up waiting first.
      bool claimed = false;
      try {
        claimed = handed.handover_id().empty() ||
                  init.host.cache().compare_and_set(handover_key(handed.handover_id()), std::nullopt, "taken",
                                                    std::chrono::milliseconds(kHandOverClaimMs));
      } catch (const sdk::Error& e) {
        // The cache is out of reach for the previous generation too, which then stays frozen
        // (resume_after_failed_reload): the rooms are this one's.
        claimed = true;
        init.host.warn(std::string("world-state: claiming the rooms handed over: ") + e.what());
      }
      if (!claimed) {
        init.host.warn("world-state: the previous generation went on with its rooms; none taken over");
        handed.clear_rooms();
      }
    }
    if (host_id_.empty()) host_id_ = random_hex(16);
    // Made here, it takes over from the previous generation's subscription at a reload.
    relay_subscription_ = init.host.subscribe(
        kHostTopicPrefix + host_id_, [this](std::string_view, std::string_view payload) { relayed(payload); },
        sdk::Run::kInline);
    const int64_t now = sdk::now_unix_ms();
    for (const rec::RoomRecord& record : handed.rooms()) {
      auto rh = std::make_shared<RoomHost>(world::Room::restore(world::from_record(record), limits_, true));
      // Clients of other hosts go on through their hosts; only the streams of this host move.
      for (const auto& remote : record.remote()) rh->remote[remote.client_id()] = {remote.host(), now};
      for (const auto& client : record.clients()) {
        if (!rh->remote.contains(client.id())) rh->awaiting_resume[client.id()] = now + kResumeWaitMs;
      }
      rh->persisted_at_ms = now;
      rh->lease = record.lease().empty() ? host_id_ : record.lease();  // from a version before epochs
      rh->lease_until_ms = now + lease_ms_ / 2;  // renewed within a third of it by the last keeper
      rh->store_version = record.store_version();
      rh->store_version_unknown = handed.handover_id().empty();
      std::lock_guard lock(rooms_mu_);
      rooms_[record.id()] = rh;
      start_ticking(rh);
    }
    for (const rec::RelayedRoom& r : handed.relayed()) {
      std::lock_guard lock(rooms_mu_);
      relayed_[r.room_id()].owner_host = r.owner_host();
      relayed_[r.room_id()].last_frame_ms = now;
    }
    rooms_gauge_.record(static_cast<double>(rooms_.size()));
    const auto every = std::chrono::milliseconds(std::max<int64_t>(lease_ms_ / 3, 50));
    keeper_ = init.host.start_timer(
        every, every, [this] { keep_rooms(); }, sdk::Run::kBlocking);
  }

  ~WorldPlugin() override {
    keeper_.cancel();
    relay_subscription_.cancel();
    std::vector<std::shared_ptr<RoomHost>> rooms;
    {
      std::lock_guard lock(rooms_mu_);
      for (auto& [id, rh] : rooms_) rooms.push_back(rh);
    }
    for (auto& rh : rooms) rh->timer.cancel();
    std::vector<std::pair<std::shared_ptr<RoomHost>, rec::RoomRecord>> stopping;
    for (auto& rh : rooms) {
      std::lock_guard lock(rh->mu);
      for (auto& [id, session] : rh->sessions) {
        session->finish(sdk::Status(sdk::StatusCode::kUnavailable, "the world service stopped; join again"));
      }
      // A room handed over to the next generation lives on there, and this generation neither
      // stores nor releases it; any other stops with this host.
      if (!rh->frozen && !rh->gone) {
        rh->gone = true;
        stopping.emplace_back(rh, world::to_record(rh->room.image(false)));
      }
    }
    // Stored as it is and its lease given up, so that another host takes it at once, from now.
    for (auto& [rh, record] : stopping) {
      const std::string room_id = rh->room.id();
      try {
        std::lock_guard store_lock(rh->store_mu);
        if (store_room(*rh, room_id, &record) == Stored::kOk)
          host_.cache().compare_and_set(lease_key(room_id), rh->lease, std::nullopt);
      } catch (const sdk::Error& e) {
        host_.warn("world-state: storing room " + room_id + " on the way out: " + e.what());
      } catch (...) {
        host_.warn("world-state: storing room " + room_id + " on the way out failed");
      }
    }
    std::lock_guard lock(rooms_mu_);
    for (auto& [id, r] : relayed_) {
      for (auto& [client, session] : r.sessions) {
        session->finish(sdk::Status(sdk::StatusCode::kUnavailable, "the world service stopped; join again"));
      }
    }
  }

  static void describe(sdk::PluginBuilder<WorldPlugin>& b) {
    b.service("gameverse.world.v1.World")
        .bidi_stream_movable("Play", &WorldPlugin::play, &WorldPlugin::play_resume, sdk::kAuthenticated);
    b.collection(kRoomsCollection);
    b.config_int("tick_hz", 20, "Room ticks per second", sdk::between(1, 60))
        .config_int("position_resolution_mm", 10, "One quantized position unit on the wire, in millimetres",
                    sdk::between(1, 1000))
        .config_int("max_coordinate_m", 10000, "Positions are within +-this, in metres",
                    sdk::between(1, 1000000))
        .config_int("aoi_radius_m", 50, "A client sees the entities within this distance (x, y), in metres",
                    sdk::between(1, 100000))
        .config_int("aoi_cell_m", 25, "The side of the area-of-interest grid's cells, in metres",
                    sdk::between(1, 100000))
        .config_int("max_rooms", 100, "Rooms one host owns at most; more joins are RESOURCE_EXHAUSTED",
                    sdk::between(1, 100000))
        .config_int("max_streams_per_account", 8,
                    "Play streams one authenticated account holds on one host at most (and so rooms it "
                    "opens); more joins are RESOURCE_EXHAUSTED",
                    sdk::between(1, 100000))
        .config_int("orphan_grace_ms", 30000,
                    "After a host takes a room over, entities whose owner has not joined again within "
                    "this long are despawned",
                    sdk::between(0, 3600000))
        .config_int("max_clients_per_room", 256, "Clients in one room at most", sdk::between(1, 100000))
        .config_int("max_entities_per_room", 10000, "Entities in one room at most", sdk::between(1, 1000000))
        .config_int("max_entities_per_client", 64, "Entities one client owns at most",
                    sdk::between(1, 100000))
        .config_int("max_components_per_entity", 16, "Components of one entity at most",
                    sdk::between(0, 1000))
        .config_int("max_component_bytes", 1024, "Bytes of one component's value at most",
                    sdk::between(0, 65536))
        .config_int("max_queued_inputs_per_room", 4096,
                    "Inputs waiting for a room's next tick at most; more are dropped and counted",
                    sdk::between(1, 1000000))
        .config_int("max_inputs_per_client_per_tick", 8,
                    "Inputs one client may queue for one tick; more are dropped and counted",
                    sdk::between(1, 1000))
        .config_int("max_unacked_frames", 16,
                    "Frames a client may have unacknowledged; past it, it gets none until it acks",
                    sdk::between(1, 1000))
        .config_int("send_budget_bytes_per_s", 16384,
                    "Bytes a second one client is sent at most (a snapshot excepted); over it the nearest "
                    "changes go first",
                    sdk::between(256, 100000000))
        .config_int("snapshot_interval_ms", 5000,
                    "How often an owned room is stored, for another host to take it over from",
                    sdk::between(100, 3600000))
        .config_int(
            "lease_ms", 3000,
            "A room's ownership lapses this long after its host last renewed it (renewed every third)",
            sdk::between(300, 600000));
  }

  std::unique_ptr<sdk::StreamReader<pb::ClientMessage>> play(sdk::CallContext& context,
                                                             sdk::ServerStream<rec::ServerWire> stream) {
    auto session = std::make_shared<Session>(std::move(stream));
    return std::make_unique<PlayReader>(*this, session, context.principal().user_id);
  }

  std::unique_ptr<sdk::StreamReader<pb::ClientMessage>> play_resume(
      std::string_view detached, sdk::ServerStream<rec::ServerWire> stream) {
    auto session = std::make_shared<Session>(std::move(stream));
    rec::DetachedPlay d;
    d.ParseFromArray(detached.data(), static_cast<int>(detached.size()));
    if (!d.principal().empty()) {
      // Counted, never refused: the stream was admitted before the reload.
      std::lock_guard lock(accounts_->mu);
      ++accounts_->streams[d.principal()];
      session->slot = std::make_shared<AccountSlot>(accounts_, d.principal());
    }
    session->room_id = d.room_id();
    session->client_id = d.client_id();
    auto reader = std::make_unique<PlayReader>(*this, session, d.principal());
    if (d.room_id().empty()) return reader;
    if (d.joining()) {
      session->mode = Session::Mode::kJoining;
      session->view = d.view();
      for (const std::string& bytes : d.early()) session->early.emplace_back().ParseFromString(bytes);
      host_.run_blocking([this, session] { join(session); });
      return reader;
    }
    if (d.relayed()) {
      std::lock_guard lock(rooms_mu_);
      auto it = relayed_.find(d.room_id());
      if (it == relayed_.end()) {
        session->finish(sdk::Status(sdk::StatusCode::kUnavailable, "the room moved; join again"));
        return reader;
      }
      session->mode = Session::Mode::kRelayed;
      it->second.sessions[d.client_id()] = session;
      return reader;
    }
    std::shared_ptr<RoomHost> rh = room(d.room_id());
    if (!rh) {
      session->finish(
          sdk::Status(sdk::StatusCode::kUnavailable, "the room is no longer on this host; join again"));
      return reader;
    }
    std::lock_guard lock(rh->mu);
    if (rh->room.client(d.client_id()) == nullptr) {
      session->finish(sdk::Status(sdk::StatusCode::kUnavailable, "the client left the room; join again"));
      return reader;
    }
    session->mode = Session::Mode::kLocal;
    rh->sessions[d.client_id()] = session;
    rh->awaiting_resume.erase(d.client_id());
    rh->room.set_attached(d.client_id(), true);
    std::lock_guard inbox_lock(rh->inbox_mu);
    if (d.held_ack() != 0)
      rh->inbox.push_back({InboxItem::Kind::kAck, d.client_id(), d.held_ack(), {}, {}, {}});
    for (const auto& in : d.held_inputs()) {
      rh->inbox.push_back({InboxItem::Kind::kInput, d.client_id(), 0, world::from_record(in), {}, {}});
    }
    return reader;
  }

  // The rooms stop here, as they are, for the next generation; the streams follow (detach).
  std::string save_state() override {
    rec::HandOver out;
    out.set_host_id(host_id_);
    out.set_handover_id(random_hex(16));
    {
      std::lock_guard lock(handover_mu_);
      handover_id_ = out.handover_id();
      handover_outcome_ = 0;
    }
    std::vector<std::shared_ptr<RoomHost>> rooms;
    {
      std::lock_guard lock(rooms_mu_);
      for (auto& [id, rh] : rooms_) rooms.push_back(rh);
      for (auto& [id, r] : relayed_) {
        rec::RelayedRoom* relayed = out.add_relayed();
        relayed->set_room_id(id);
        relayed->set_owner_host(r.owner_host);
      }
    }
    for (auto& rh : rooms) {
      std::lock_guard lock(rh->mu);
      if (rh->gone) continue;
      // Frozen first: what reaches the inbox after the drain is held for the stream's detach.
      rh->frozen = true;
      drain_inbox(*rh, nullptr);
      rh->frozen_at_ms = sdk::now_unix_ms();
      rec::RoomRecord* record = out.add_rooms();
      *record = world::to_record(rh->room.image(true));
      record->set_lease(rh->lease);
      for (const auto& [client_id, remote] : rh->remote) {
        rec::RemoteClientRecord* r = record->add_remote();
        r->set_client_id(client_id);
        r->set_host(remote.host);
      }
      // Frozen before this: no keeper writes the record after the version read here.
      std::lock_guard store_lock(rh->store_mu);
      record->set_store_version(rh->store_version);
    }
    return out.SerializeAsString();
  }

  // --- a stream's messages ------------------------------------------------------------------------

  void on_message(const std::shared_ptr<Session>& session, const std::string& principal,
                  const pb::ClientMessage& message) {
    Session::Mode mode;
    {
      std::lock_guard lock(session->mu);
      mode = session->mode;
    }
    if (mode == Session::Mode::kNew) {
      if (!message.has_join()) {
        throw sdk::Error(sdk::StatusCode::kFailedPrecondition, "the first message must be a join");
      }
      if (!valid_room_id(message.join().room_id())) {
        throw sdk::Error(sdk::StatusCode::kInvalidArgument, "join.room_id must be 1-64 of [A-Za-z0-9_.-]");
      }
      const world::Position view = position_of(message.join().view());
      if (!valid_view(view, limits_.max_coordinate_m))
        throw sdk::Error(sdk::StatusCode::kInvalidArgument, "join.view is outside the world");
      std::shared_ptr<AccountSlot> slot;
      if (!principal.empty()) {
        std::lock_guard lock(accounts_->mu);
        size_t& streams = accounts_->streams[principal];
        if (streams >= max_streams_per_account_) {
          if (streams == 0) accounts_->streams.erase(principal);
          throw sdk::Error(sdk::StatusCode::kResourceExhausted,
                           "the account holds its most Play streams on this host (max_streams_per_account)");
        }
        ++streams;
        slot = std::make_shared<AccountSlot>(accounts_, principal);
      }
      {
        std::lock_guard lock(session->mu);
        session->mode = Session::Mode::kJoining;
        session->room_id = message.join().room_id();
        // 128 random bits: an anonymous client's id cannot be guessed to speak for it.
        session->client_id = principal.empty() ? "anon-" + random_hex(16) : principal;
        session->view = message.join().view();
        session->slot = std::move(slot);
      }
      host_.run_blocking([this, session] { join(session); });
      return;
    }
    if (message.has_join())
      throw sdk::Error(sdk::StatusCode::kFailedPrecondition, "the stream already joined a room");
    {
      std::lock_guard lock(session->mu);
      mode = session->mode;
      if (mode == Session::Mode::kJoining && session->early.size() < kHeldPerClient) {
        session->early.push_back(message);  // goes to the room, in order, once it is joined
        return;
      }
    }
    if (mode == Session::Mode::kJoining) {
      if (message.has_input()) {
        session->write(
            rejected(message.input().seq(), "input", "too many messages before the room was joined"));
      }
      return;
    }
    dispatch(session, mode, message);
  }

  // The join is settled: what the client sent meanwhile goes first, then the stream serves.
  void finish_join(const std::shared_ptr<Session>& session, Session::Mode mode) {
    for (;;) {
      std::vector<pb::ClientMessage> early;
      {
        std::lock_guard lock(session->mu);
        if (session->early.empty()) {
          session->mode = mode;
          return;
        }
        early.swap(session->early);
      }
      for (const pb::ClientMessage& message : early) dispatch(session, mode, message);
    }
  }

  void dispatch(const std::shared_ptr<Session>& session, Session::Mode mode,
                const pb::ClientMessage& message) {
    InboxItem item;
    item.client_id = session->client_id;
    if (message.has_input()) {
      std::optional<world::Input> input = input_of(message.input());
      if (!input) {
        inputs_rejected_.record(1);
        session->write(rejected(message.input().seq(), "input.action", "is missing"));
        return;
      }
      if (auto r = world::check_shape(*input, limits_)) {
        inputs_rejected_.record(1);
        session->write(rejected(r->seq, r->field, r->reason));
        return;
      }
      item.kind = InboxItem::Kind::kInput;
      item.input = std::move(*input);
    } else if (message.has_ack()) {
      item.kind = InboxItem::Kind::kAck;
      item.tick = message.ack().tick();
    } else if (message.has_request_snapshot()) {
      item.kind = InboxItem::Kind::kSnapshot;
    } else {
      return;
    }
    // A client's share of the room's inbox: its inputs for a tick, an ack and a request or two.
    // It starts again every tick interval (also for a relayed client, whose room ticks elsewhere).
    const int64_t now = sdk::now_unix_ms();
    if (now - session->share_since_ms >= 1000 / static_cast<int64_t>(limits_.tick_hz)) {
      session->share_since_ms = now;
      session->messages_this_tick = 0;
    }
    if (session->messages_this_tick++ >= limits_.max_inputs_per_client_per_tick + 4) {
      if (message.has_input()) inputs_dropped_.record(1);
      return;
    }
    if (mode == Session::Mode::kRelayed) return relay_to_owner(session, message);
    std::shared_ptr<RoomHost> rh = room(session->room_id);
    if (rh) deliver(*rh, std::move(item));
  }

  void on_end(const std::shared_ptr<Session>& session, bool cancelled) {
    session->finish(cancelled ? sdk::Status(sdk::StatusCode::kCancelled, "cancelled") : sdk::Status::ok());
    std::string room_id, client_id;
    Session::Mode mode;
    {
      std::lock_guard lock(session->mu);
      room_id = session->room_id;
      client_id = session->client_id;
      mode = session->mode;
    }
    if (room_id.empty()) return;
    if (mode == Session::Mode::kRelayed) {
      std::string owner;
      {
        std::lock_guard lock(rooms_mu_);
        auto it = relayed_.find(room_id);
        if (it == relayed_.end()) return;
        auto s = it->second.sessions.find(client_id);
        if (s != it->second.sessions.end() && s->second == session) it->second.sessions.erase(s);
        owner = it->second.owner_host;
        if (it->second.sessions.empty()) relayed_.erase(it);
      }
      rec::RelayItem item;
      item.set_client_id(client_id);
      item.set_leave(true);
      send_relay(owner, room_id, {item});
      return;
    }
    std::shared_ptr<RoomHost> rh = room(room_id);
    if (!rh) return;
    bool empty = false;
    {
      std::lock_guard lock(rh->mu);
      auto s = rh->sessions.find(client_id);
      if (s == rh->sessions.end() || s->second != session) return;  // replaced by a newer stream
      rh->sessions.erase(s);
      if (rh->frozen) return;  // the next generation has it; its stream is gone
      rh->room.leave(client_id);
      empty = rh->sessions.empty() && rh->remote.empty() && rh->awaiting_resume.empty();
    }
    if (empty) {
      try {
        host_.run_blocking([this, rh] { close_if_empty(rh); });
      } catch (const sdk::Error&) {
        // The pool is full: the keeper closes it.
      }
    }
  }

  std::optional<std::string> detach(const std::shared_ptr<Session>& session, const std::string& principal) {
    rec::DetachedPlay out;
    out.set_principal(principal);
    Session::Mode mode;
    {
      std::lock_guard lock(session->mu);
      if (session->ended) return std::nullopt;
      session->ended = true;  // it goes on in the next generation
      session->moved = true;
      mode = session->mode;
      out.set_room_id(session->room_id);
      out.set_client_id(session->client_id);
    }
    if (mode == Session::Mode::kJoining) {
      // Its join, on the pool here, stops at the ended session: the next generation settles it.
      std::lock_guard lock(session->mu);
      out.set_joining(true);
      *out.mutable_view() = session->view;
      for (const pb::ClientMessage& m : session->early) out.add_early(m.SerializeAsString());
    }
    if (mode == Session::Mode::kRelayed) out.set_relayed(true);
    if (mode == Session::Mode::kLocal) {
      if (std::shared_ptr<RoomHost> rh = room(out.room_id())) {
        std::lock_guard lock(rh->inbox_mu);
        auto held = rh->held.find(out.client_id());
        if (held != rh->held.end()) {
          for (const InboxItem& item : held->second) {
            if (item.kind == InboxItem::Kind::kAck) out.set_held_ack(std::max(out.held_ack(), item.tick));
            if (item.kind == InboxItem::Kind::kInput)
              *out.add_held_inputs() = world::to_record(item.client_id, item.input);
          }
          rh->held.erase(held);
        }
      }
    }
    return out.SerializeAsString();
  }

 private:
  std::shared_ptr<RoomHost> room(const std::string& id) {
    std::lock_guard lock(rooms_mu_);
    auto it = rooms_.find(id);
    return it == rooms_.end() ? nullptr : it->second;
  }

  void deliver(RoomHost& rh, InboxItem item) {
    std::lock_guard lock(rh.inbox_mu);
    if (rh.frozen) {
      auto& held = rh.held[item.client_id];
      if (held.size() < kHeldPerClient) held.push_back(std::move(item));
      return;
    }
    if (rh.inbox.size() >= limits_.max_queued_inputs * 2) {
      if (item.kind == InboxItem::Kind::kInput) inputs_dropped_.record(1);
      return;
    }
    rh.inbox.push_back(std::move(item));
  }

  // Under rh.mu: what arrived since the last tick reaches the room.
  void drain_inbox(RoomHost& rh, std::map<std::string, std::vector<rec::ServerWire>>* replies) {
    std::vector<InboxItem> items;
    {
      std::lock_guard lock(rh.inbox_mu);
      items.swap(rh.inbox);
    }
    const int64_t now = sdk::now_unix_ms();
    for (InboxItem& item : items) {
      if (!item.host.empty() && item.kind != InboxItem::Kind::kJoinRemote) {
        // A relayed message speaks only for a client that host joined.
        auto remote = rh.remote.find(item.client_id);
        if (remote == rh.remote.end() || remote->second.host != item.host) continue;
        remote->second.last_heard_ms = now;
      }
      switch (item.kind) {
        case InboxItem::Kind::kAck: rh.room.ack(item.client_id, item.tick); break;
        case InboxItem::Kind::kSnapshot: rh.room.request_snapshot(item.client_id); break;
        case InboxItem::Kind::kInput: {
          bool dropped = false;
          const uint64_t seq = item.input.seq;
          if (auto r = rh.room.enqueue(item.client_id, std::move(item.input), &dropped)) {
            inputs_rejected_.record(1);
            if (replies) (*replies)[item.client_id].push_back(rejected(seq, r->field, r->reason));
          }
          if (dropped) inputs_dropped_.record(1);
          break;
        }
        case InboxItem::Kind::kJoinRemote: {
          // A client with a stream here is this host's: another host's join never replaces it.
          if (rh.sessions.contains(item.client_id) || !valid_view(item.view, limits_.max_coordinate_m)) break;
          if (!rh.room.join(item.client_id, item.view)) {
            if (replies)
              (*replies)[item.client_id].push_back(rejected(0, "join.room_id", "the room is full"));
            break;
          }
          rh.remote[item.client_id] = {item.host, now};
          rh.awaiting_resume.erase(item.client_id);  // it is back, through its host
          if (replies) (*replies)[item.client_id].push_back(joined(rh.room.id(), item.client_id));
          break;
        }
        case InboxItem::Kind::kLeaveRemote:
          if (rh.remote.erase(item.client_id) > 0) rh.room.leave(item.client_id);
          break;
      }
    }
  }

  rec::ServerWire joined(const std::string& room_id, const std::string& client_id) const {
    rec::ServerWire out;
    pb::Joined* j = out.mutable_joined();
    j->set_room_id(room_id);
    j->set_client_id(client_id);
    j->set_tick_hz(limits_.tick_hz);
    j->set_position_resolution_mm(limits_.position_resolution_mm);
    return out;
  }

  void start_ticking(const std::shared_ptr<RoomHost>& rh) {
    const int64_t interval_ns = 1'000'000'000 / limits_.tick_hz;
    // A room handed over goes on where its last tick would have been followed.
    int64_t delay_ns = interval_ns;
    if (rh->room.tick_unix_ms() != 0) {
      const int64_t due_ms = rh->room.tick_unix_ms() + interval_ns / 1'000'000;
      delay_ns = std::clamp<int64_t>((due_ms - sdk::now_unix_ms()) * 1'000'000, 0, interval_ns);
    }
    std::weak_ptr<RoomHost> weak = rh;
    rh->timer = host_.start_timer(
        std::chrono::nanoseconds(delay_ns), std::chrono::nanoseconds(interval_ns),
        [this, weak] {
          if (auto r = weak.lock()) tick(*r);
        },
        sdk::Run::kBlocking);
  }

  void tick(RoomHost& rh) {
    const double started = thread_cpu_seconds();
    std::map<std::string, rec::Relay> to_hosts;
    {
      std::lock_guard lock(rh.mu);
      if (rh.gone) return;
      const int64_t now = sdk::now_unix_ms();
      if (rh.frozen) {
        if (now - rh.frozen_at_ms < kFreezeLimitMs || !resume_after_failed_reload()) return;
        // The next generation never took the rooms (its start failed): they go on here, with what
        // arrived meanwhile.
        rh.frozen = false;
        std::lock_guard inbox_lock(rh.inbox_mu);
        for (auto& [client, items] : rh.held) {
          for (InboxItem& item : items) rh.inbox.push_back(std::move(item));
        }
        rh.held.clear();
      }
      // Past its lease as this host last knew it, another host may have the room: it waits for the
      // keeper to renew the lease (or give the room up).
      if (now > rh.lease_until_ms) return;
      std::map<std::string, std::vector<rec::ServerWire>> replies;
      drain_inbox(rh, &replies);
      for (auto it = rh.awaiting_resume.begin(); it != rh.awaiting_resume.end();) {
        if (now < it->second) {
          ++it;
          continue;
        }
        rh.room.leave(it->first);
        it = rh.awaiting_resume.erase(it);
      }
      for (auto it = rh.remote.begin(); it != rh.remote.end();) {
        if (now - it->second.last_heard_ms < 2 * lease_ms_ + 5000) {
          ++it;
          continue;
        }
        rh.room.leave(it->first);
        it = rh.remote.erase(it);
      }
      world::TickResult result = rh.room.step(now);
      for (const world::Rejection& r : result.rejections) {
        inputs_rejected_.record(1);
        replies[r.client_id].push_back(rejected(r.seq, r.field, r.reason));
      }
      size_t bytes = 0;
      std::set<std::string> too_slow;
      auto send = [&](const std::string& client_id, const rec::ServerWire& message, const std::string* raw) {
        auto local = rh.sessions.find(client_id);
        if (local != rh.sessions.end()) {
          if (!local->second->write(message) && !local->second->is_moved()) too_slow.insert(client_id);
          return;
        }
        auto remote = rh.remote.find(client_id);
        if (remote == rh.remote.end()) return;
        rec::Relay& relay = to_hosts[remote->second.host];
        rec::RelayItem* item = relay.add_items();
        item->set_client_id(client_id);
        item->set_server_message(raw != nullptr ? *raw : message.SerializeAsString());
      };
      for (auto& [client_id, messages] : replies) {
        for (const rec::ServerWire& m : messages) send(client_id, m, nullptr);
      }
      for (const world::Outgoing& frame : result.frames) {
        bytes += frame.bytes.size();
        if (rh.sessions.contains(frame.client_id)) {
          send(frame.client_id, frame_of(frame), nullptr);
        } else {
          send(frame.client_id, {}, &frame.bytes);
        }
      }
      for (auto& [host, relay] : to_hosts) {
        relay.set_from_host(host_id_);
        relay.set_room_id(rh.room.id());
      }
      // A stream that could not take its frame is finished: its client leaves, and the room stops
      // building frames for it.
      for (const std::string& client_id : too_slow) {
        rh.sessions.erase(client_id);
        rh.room.leave(client_id);
        host_.info("world-state: room " + rh.room.id() + ": client " + client_id +
                   " did not read its frames; its stream was finished");
      }
      frame_bytes_.record(static_cast<double>(bytes));
    }
    for (auto& [host, relay] : to_hosts) publish(host, relay);
    ticks_.record(1);
    tick_seconds_.record(thread_cpu_seconds() - started);
  }

  // --- ownership, persistence and relaying ------------------------------------------------------

  // On the pool: the room is this host's (its lease), another host's (relay), or nobody's yet
  // (take it, from its last stored snapshot).
  void join(const std::shared_ptr<Session>& session) {
    std::string room_id, client_id;
    pb::Vec3 view;
    {
      std::lock_guard lock(session->mu);
      if (session->ended) return;
      room_id = session->room_id;
      client_id = session->client_id;
      view = session->view;
    }
    std::lock_guard joins(room_lock(room_id));
    try {
      std::shared_ptr<RoomHost> rh = room(room_id);
      std::string owner;
      if (!rh) {
        const sdk::Cache cache = host_.cache();
        for (int attempt = 0; attempt < 3 && !rh && owner.empty(); ++attempt) {
          std::optional<std::string> holder = cache.get(lease_key(room_id));
          if (holder && host_of(*holder) != host_id_) {
            owner = host_of(*holder);
            break;
          }
          {
            std::lock_guard lock(rooms_mu_);
            if (rooms_.size() >= max_rooms_) {
              return session->finish(sdk::Status(sdk::StatusCode::kResourceExhausted,
                                                 "this host serves its most rooms (max_rooms)"));
            }
          }
          // A lease of this host with no room here is left from an earlier take (its close did not
          // release it): this take replaces it, under a new epoch.
          const std::string lease = new_lease();
          const std::optional<std::string_view> expected =
              holder ? std::optional<std::string_view>(*holder) : std::nullopt;
          if (cache.compare_and_set(lease_key(room_id), expected, lease,
                                    std::chrono::milliseconds(lease_ms_)))
            rh = take_room(room_id, lease);
        }
        if (!rh && owner.empty()) {
          return session->finish(sdk::Status(sdk::StatusCode::kUnavailable,
                                             "the room's owner could not be settled; join again"));
        }
      }
      if (rh) return attach_local(rh, session, client_id, view);
      // Another host simulates it: this one relays.
      {
        std::lock_guard lock(rooms_mu_);
        if (!relayed_.contains(room_id) && relayed_.size() >= max_rooms_) {
          return session->finish(sdk::Status(sdk::StatusCode::kResourceExhausted,
                                             "this host relays its most rooms (max_rooms)"));
        }
        RelayedRoomState& r = relayed_[room_id];
        if (r.owner_host != owner) r.owner_host = owner;
        r.last_frame_ms = sdk::now_unix_ms();
        r.last_join_sent_ms = r.last_frame_ms;
        r.sessions[client_id] = session;
      }
      pb::ClientMessage join;
      join.mutable_join()->set_room_id(room_id);
      *join.mutable_join()->mutable_view() = view;
      rec::RelayItem item;
      item.set_client_id(client_id);
      item.set_client_message(join.SerializeAsString());
      send_relay(owner, room_id, {item});
      finish_join(session, Session::Mode::kRelayed);
    } catch (const sdk::Error& e) {
      session->finish(
          sdk::Status(sdk::StatusCode::kUnavailable, std::string("joining the room failed: ") + e.what()));
    }
  }

  // Under the room's lock, holding the lease `lease`: the room from its last snapshot, or a new one.
  std::shared_ptr<RoomHost> take_room(const std::string& room_id, const std::string& lease) {
    std::optional<sdk::Record<rec::RoomRecord>> stored =
        host_.store().get<rec::RoomRecord>(kRoomsCollection, room_id);
    world::Room r = stored ? world::Room::restore(world::from_record(stored->value), limits_, false)
                           : world::Room(room_id, limits_);
    auto rh = std::make_shared<RoomHost>(std::move(r));
    const int64_t now = sdk::now_unix_ms();
    rh->persisted_at_ms = now;
    rh->lease = lease;
    rh->lease_until_ms = now + lease_ms_;
    // Written from now on only over the version read here: an older owner that still writes
    // fails, and so does this one once a newer owner has written.
    rh->store_version = stored ? stored->version : 0;
    // The clients it held come back (joining again, or re-joined by their relaying hosts) within
    // the grace; what the others owned goes then.
    if (stored && stored->value.entities_size() > 0) rh->orphans_due_ms = now + orphan_grace_ms_;
    {
      std::lock_guard lock(rooms_mu_);
      rooms_[room_id] = rh;
      rooms_gauge_.record(static_cast<double>(rooms_.size()));
      auto relayed = relayed_.find(room_id);
      if (relayed != relayed_.end()) {
        // This host relayed it: its clients are now the room's own, from the snapshot on.
        std::lock_guard room_lock(rh->mu);
        for (auto& [client_id, session] : relayed->second.sessions) {
          if (session->is_ended()) continue;
          {
            std::lock_guard session_lock(session->mu);
            session->mode = Session::Mode::kLocal;
          }
          rh->room.join(client_id, position_of(session->view));
          rh->sessions[client_id] = session;
          session->write(joined(room_id, client_id));
        }
        relayed_.erase(relayed);
      }
    }
    start_ticking(rh);
    host_.info("world-state: took room " + room_id +
               (stored ? " from its snapshot at tick " + std::to_string(stored->value.tick()) : " (new)"));
    return rh;
  }

  void attach_local(const std::shared_ptr<RoomHost>& rh, const std::shared_ptr<Session>& session,
                    const std::string& client_id, const pb::Vec3& view) {
    std::shared_ptr<Session> replaced;
    {
      std::lock_guard lock(rh->mu);
      if (rh->gone) {
        return session->finish(sdk::Status(sdk::StatusCode::kUnavailable, "the room moved; join again"));
      }
      if (!rh->room.join(client_id, position_of(view))) {
        return session->finish(sdk::Status(sdk::StatusCode::kResourceExhausted,
                                           "the room holds its most clients (max_clients_per_room)"));
      }
      auto it = rh->sessions.find(client_id);
      if (it != rh->sessions.end() && it->second != session) replaced = it->second;
      rh->sessions[client_id] = session;
      rh->awaiting_resume.erase(client_id);
      session->write(joined(rh->room.id(), client_id));
    }
    finish_join(session, Session::Mode::kLocal);
    if (replaced) {
      replaced->finish(
          sdk::Status(sdk::StatusCode::kAborted, "the client joined the room on another stream"));
    }
  }

  // A fresh lease value for one take of a room.
  std::string new_lease() const { return host_id_ + ":" + random_hex(8); }

  std::mutex& room_lock(const std::string& room_id) {
    return room_locks_[std::hash<std::string>()(room_id) % kRoomLocks];
  }

  // Renews this take's lease. One that lapsed (a pause, a reload that did not happen) is taken
  // again when no other host holds it: should another have taken the room and stored it meanwhile,
  // the next write of the record fails on its version and the room is given up then.
  bool renew_lease(RoomHost& rh, const std::string& room_id) {
    const sdk::Cache cache = host_.cache();
    const auto ttl = std::chrono::milliseconds(lease_ms_);
    if (!cache.compare_and_set(lease_key(room_id), rh.lease, rh.lease, ttl) &&
        !cache.compare_and_set(lease_key(room_id), std::nullopt, rh.lease, ttl)) {
      return false;
    }
    rh.lease_until_ms = sdk::now_unix_ms() + lease_ms_;
    return true;
  }

  enum class Stored { kOk, kLost };
  // On the pool, under rh.store_mu: renews the room's lease and writes its record (nullptr: erases
  // it) over the version this take last read or wrote. kLost when another take holds the lease or
  // wrote the record since; a room handed over to the next generation is never written here.
  Stored store_room(RoomHost& rh, const std::string& room_id, rec::RoomRecord* record) {
    if (rh.frozen || !renew_lease(rh, room_id)) return Stored::kLost;
    try {
      if (record != nullptr) {
        record->set_lease(rh.lease);
        const int64_t expected = rh.store_version_unknown ? sdk::Store::kAnyVersion
                                 : rh.store_version == 0  ? sdk::Store::kCreateOnly
                                                          : rh.store_version;
        rh.store_version = host_.store().put(kRoomsCollection, room_id, *record, expected);
      } else if (rh.store_version != 0 || rh.store_version_unknown) {
        host_.store().erase(kRoomsCollection, room_id,
                            rh.store_version_unknown ? sdk::Store::kAnyVersion : rh.store_version);
        rh.store_version = 0;
      }
      rh.store_version_unknown = false;
    } catch (const sdk::Error& e) {
      if (e.code() == sdk::StatusCode::kAborted || e.code() == sdk::StatusCode::kAlreadyExists ||
          e.code() == sdk::StatusCode::kNotFound) {
        return Stored::kLost;
      }
      throw;
    }
    return Stored::kOk;
  }

  void close_if_empty(const std::shared_ptr<RoomHost>& rh) {
    const std::string room_id = rh->room.id();  // never changes
    // One at a time with a join of the same room: a join waits until the room is stored and its
    // lease released, then takes it again from what was stored.
    std::lock_guard room_lock_guard(room_lock(room_id));
    rec::RoomRecord record;
    bool erase = false;
    {
      std::lock_guard lock(rh->mu);
      if (rh->gone || rh->frozen || !rh->sessions.empty() || !rh->remote.empty() ||
          !rh->awaiting_resume.empty()) {
        return;
      }
      rh->gone = true;
      // A room with nothing in it leaves no record behind.
      erase = rh->room.entity_count() == 0;
      if (!erase) record = world::to_record(rh->room.image(false));
    }
    {
      std::lock_guard lock(rooms_mu_);
      auto it = rooms_.find(room_id);
      if (it != rooms_.end() && it->second == rh) rooms_.erase(it);
      rooms_gauge_.record(static_cast<double>(rooms_.size()));
    }
    rh->timer.cancel();
    try {
      std::lock_guard store_lock(rh->store_mu);
      if (store_room(*rh, room_id, erase ? nullptr : &record) == Stored::kOk) {
        host_.cache().compare_and_set(lease_key(room_id), rh->lease, std::nullopt);
      } else {
        host_.warn("world-state: room " + room_id + " was not stored on closing: another host holds it");
      }
    } catch (const sdk::Error& e) {
      host_.warn("world-state: closing room " + room_id + ": " + e.what());
    }
  }

  // On the pool, every third of a lease: renew the rooms' leases (a room whose lease another host
  // took stops here), store the rooms due a snapshot, despawn what the clients that did not come
  // back after a take-over owned, and take over relayed rooms whose owner went silent when their
  // lease lapsed.
  void keep_rooms() {
    std::vector<std::shared_ptr<RoomHost>> rooms;
    {
      std::lock_guard lock(rooms_mu_);
      for (auto& [id, rh] : rooms_) rooms.push_back(rh);
    }
    const sdk::Cache cache = host_.cache();
    const int64_t now = sdk::now_unix_ms();
    for (auto& rh : rooms) {
      std::string room_id;
      bool persist = false;
      bool empty = false;
      rec::RoomRecord record;
      {
        std::lock_guard lock(rh->mu);
        if (rh->gone) continue;
        room_id = rh->room.id();
        if (rh->frozen) {
          // A room handed over is the next generation's: this one never stores or releases it, but
          // keeps its lease (the same value) alive, should the next generation not start.
          try {
            renew_lease(*rh, room_id);
          } catch (const sdk::Error&) {
          }
          continue;
        }
        empty = rh->sessions.empty() && rh->remote.empty() && rh->awaiting_resume.empty();
        if (rh->orphans_due_ms != 0 && now >= rh->orphans_due_ms) {
          rh->orphans_due_ms = 0;
          if (const size_t n = rh->room.remove_entities_of_absent_clients(); n > 0) {
            host_.info("world-state: room " + room_id + ": despawned " + std::to_string(n) +
                       " entities of clients that did not come back after the take-over");
          }
        }
        if (now - rh->persisted_at_ms >= snapshot_interval_ms_) {
          persist = true;
          rh->persisted_at_ms = now;
          record = world::to_record(rh->room.image(false));
        }
      }
      Stored stored = Stored::kOk;
      try {
        std::lock_guard store_lock(rh->store_mu);
        if (persist) {
          stored = store_room(*rh, room_id, &record);
        } else if (rh->frozen) {
          continue;
        } else if (!renew_lease(*rh, room_id)) {
          stored = Stored::kLost;
        }
      } catch (const sdk::Error& e) {
        host_.warn("world-state: keeping room " + room_id + ": " + e.what());
      }
      if (stored == Stored::kLost) {
        if (!rh->frozen) lose_room(rh, "the room's lease passed to another host");
        continue;
      }
      if (empty) close_if_empty(rh);
    }
    // Relayed rooms whose owner went silent.
    std::vector<std::pair<std::string, std::string>> silent;
    {
      std::lock_guard lock(rooms_mu_);
      for (auto& [id, r] : relayed_) {
        if (now - r.last_frame_ms > lease_ms_ / 2) silent.emplace_back(id, r.owner_host);
      }
    }
    for (const auto& [room_id, owner] : silent) {
      try {
        std::lock_guard joins(room_lock(room_id));
        std::optional<std::string> holder = cache.get(lease_key(room_id));
        if (!holder) {
          {
            std::lock_guard lock(rooms_mu_);
            if (rooms_.size() >= max_rooms_) continue;  // its clients are told when the owner is back
          }
          const std::string lease = new_lease();
          if (cache.compare_and_set(lease_key(room_id), std::nullopt, lease,
                                    std::chrono::milliseconds(lease_ms_))) {
            take_room(room_id, lease);
          }
          continue;
        }
        // The owner may have restarted or changed: join its clients again.
        const std::string holder_host = host_of(*holder);
        std::vector<rec::RelayItem> items;
        {
          std::lock_guard lock(rooms_mu_);
          auto it = relayed_.find(room_id);
          if (it == relayed_.end()) continue;
          it->second.owner_host = holder_host;
          if (now - it->second.last_join_sent_ms < lease_ms_) continue;
          it->second.last_join_sent_ms = now;
          for (auto& [client_id, session] : it->second.sessions) {
            pb::ClientMessage join;
            join.mutable_join()->set_room_id(room_id);
            *join.mutable_join()->mutable_view() = session->view;
            rec::RelayItem& item = items.emplace_back();
            item.set_client_id(client_id);
            item.set_client_message(join.SerializeAsString());
          }
        }
        if (holder_host != host_id_) send_relay(holder_host, room_id, items);
      } catch (const sdk::Error& e) {
        host_.warn("world-state: relayed room " + room_id + ": " + e.what());
      }
    }
  }

  // Whether this generation goes on with the rooms it froze for a reload: only if the next
  // generation never claimed them (it did not start). Settled once, in the cache, for both.
  bool resume_after_failed_reload() {
    std::lock_guard lock(handover_mu_);
    if (handover_outcome_ == 0) {
      try {
        handover_outcome_ = handover_id_.empty() || host_.cache().compare_and_set(
                                                        handover_key(handover_id_), std::nullopt, "resumed",
                                                        std::chrono::milliseconds(kHandOverClaimMs))
                                ? 1
                                : 2;
      } catch (const sdk::Error&) {
        // Unsettled: the next generation may have taken the rooms without reaching the cache
        // either, so this one stays frozen for good (two generations must never both go on).
        handover_outcome_ = 2;
      }
    }
    return handover_outcome_ == 1;
  }

  void lose_room(const std::shared_ptr<RoomHost>& rh, const std::string& why) {
    std::string room_id;
    std::map<std::string, rec::Relay> closes;
    {
      std::lock_guard lock(rh->mu);
      rh->gone = true;
      room_id = rh->room.id();
      for (auto& [id, session] : rh->sessions) {
        session->finish(sdk::Status(sdk::StatusCode::kUnavailable, why + "; join again"));
      }
      for (auto& [id, remote] : rh->remote) {
        rec::RelayItem* item = closes[remote.host].add_items();
        item->set_client_id(id);
        item->set_closed(why);
      }
    }
    {
      std::lock_guard lock(rooms_mu_);
      auto it = rooms_.find(room_id);
      if (it != rooms_.end() && it->second == rh) rooms_.erase(it);
      rooms_gauge_.record(static_cast<double>(rooms_.size()));
    }
    rh->timer.cancel();
    for (auto& [host, relay] : closes) {
      relay.set_from_host(host_id_);
      relay.set_room_id(room_id);
      publish(host, relay);
    }
    host_.warn("world-state: stopped simulating room " + room_id + ": " + why);
  }

  void relay_to_owner(const std::shared_ptr<Session>& session, const pb::ClientMessage& message) {
    std::string owner;
    {
      std::lock_guard lock(rooms_mu_);
      auto it = relayed_.find(session->room_id);
      if (it == relayed_.end()) return;
      owner = it->second.owner_host;
    }
    rec::RelayItem item;
    item.set_client_id(session->client_id);
    item.set_client_message(message.SerializeAsString());
    send_relay(owner, session->room_id, {item});
  }

  // Queued for the pool: a publish waits on Redis, and stream callbacks must not.
  void send_relay(const std::string& host, const std::string& room_id, std::vector<rec::RelayItem> items) {
    if (items.empty()) return;
    {
      std::lock_guard lock(outbox_mu_);
      if (outbox_.size() >= kOutboxLimit) {
        relay_dropped_.record(1);
        return;  // the acks that follow heal what this loses
      }
      rec::Relay relay;
      relay.set_from_host(host_id_);
      relay.set_room_id(room_id);
      for (auto& item : items) *relay.add_items() = std::move(item);
      outbox_.emplace_back(host, std::move(relay));
      if (flushing_) return;
      flushing_ = true;
    }
    try {
      host_.run_blocking_with_status(
          [this](gv_status_code status) {
            if (status == GV_STATUS_OK) return flush_outbox();
            std::lock_guard lock(outbox_mu_);
            flushing_ = false;
          },
          nullptr);
    } catch (const sdk::Error&) {
      std::lock_guard lock(outbox_mu_);
      flushing_ = false;
    }
  }

  void flush_outbox() {
    for (;;) {
      std::deque<std::pair<std::string, rec::Relay>> batch;
      {
        std::lock_guard lock(outbox_mu_);
        if (outbox_.empty()) {
          flushing_ = false;
          return;
        }
        batch.swap(outbox_);
      }
      for (auto& [host, relay] : batch) publish(host, relay);
    }
  }

  void publish(const std::string& host, const rec::Relay& relay) {
    try {
      host_.publish(kHostTopicPrefix + host, relay.SerializeAsString());
    } catch (const sdk::Error& e) {
      relay_dropped_.record(1);
    }
  }

  // A message from another host, on the delivery thread: short, never blocking.
  void relayed(std::string_view payload) {
    rec::Relay relay;
    if (!relay.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return;
    if (std::shared_ptr<RoomHost> rh = room(relay.room_id())) {
      for (const rec::RelayItem& item : relay.items()) {
        InboxItem in;
        in.client_id = item.client_id();
        in.host = relay.from_host();  // it speaks only for the clients it joined (drain_inbox)
        if (in.host.empty()) continue;
        if (item.leave()) {
          in.kind = InboxItem::Kind::kLeaveRemote;
          deliver(*rh, std::move(in));
          continue;
        }
        pb::ClientMessage message;
        if (!message.ParseFromString(item.client_message())) continue;
        if (message.has_join()) {
          in.kind = InboxItem::Kind::kJoinRemote;
          in.view = position_of(message.join().view());
          if (!valid_view(in.view, limits_.max_coordinate_m)) continue;
        } else if (message.has_ack()) {
          in.kind = InboxItem::Kind::kAck;
          in.tick = message.ack().tick();
        } else if (message.has_request_snapshot()) {
          in.kind = InboxItem::Kind::kSnapshot;
        } else if (message.has_input()) {
          std::optional<world::Input> input = input_of(message.input());
          if (!input) continue;
          in.kind = InboxItem::Kind::kInput;
          in.input = std::move(*input);
        } else {
          continue;
        }
        deliver(*rh, std::move(in));
      }
      return;
    }
    std::vector<std::shared_ptr<Session>> closed;
    std::vector<std::pair<std::shared_ptr<Session>, const rec::RelayItem*>> frames;
    bool not_mine = false;
    {
      std::lock_guard lock(rooms_mu_);
      auto it = relayed_.find(relay.room_id());
      if (it == relayed_.end()) {
        not_mine = relay.items_size() > 0 && !relay.items(0).client_message().empty();
      } else if (it->second.owner_host == relay.from_host()) {
        // Frames and closes only from the host that owns the room.
        it->second.last_frame_ms = sdk::now_unix_ms();
        for (const rec::RelayItem& item : relay.items()) {
          auto s = it->second.sessions.find(item.client_id());
          if (s == it->second.sessions.end()) continue;
          if (!item.closed().empty()) {
            closed.push_back(s->second);
          } else {
            frames.emplace_back(s->second, &item);
          }
        }
      }
    }
    std::vector<rec::RelayItem> left;
    for (auto& [session, item] : frames) {
      rec::ServerWire message;
      if (!message.ParseFromString(item->server_message()) || session->write(message) || session->is_moved())
        continue;
      // The stream could not take it (finished as too slow): the client leaves the room.
      {
        std::lock_guard lock(rooms_mu_);
        auto it = relayed_.find(relay.room_id());
        if (it != relayed_.end()) {
          auto s = it->second.sessions.find(item->client_id());
          if (s != it->second.sessions.end() && s->second == session) it->second.sessions.erase(s);
        }
      }
      rec::RelayItem& out = left.emplace_back();
      out.set_client_id(item->client_id());
      out.set_leave(true);
    }
    send_relay(relay.from_host(), relay.room_id(), std::move(left));
    for (auto& session : closed) {
      session->finish(
          sdk::Status(sdk::StatusCode::kUnavailable, "the room moved to another host; join again"));
    }
    if (not_mine) {
      // A client's message for a room this host does not own (any more): tell its host.
      std::vector<rec::RelayItem> items;
      for (const rec::RelayItem& item : relay.items()) {
        rec::RelayItem& out = items.emplace_back();
        out.set_client_id(item.client_id());
        out.set_closed("this host does not own the room");
      }
      send_relay(relay.from_host(), relay.room_id(), std::move(items));
    }
  }

  sdk::Host host_;
  world::Limits limits_;
  size_t max_rooms_;
  size_t max_streams_per_account_;
  int64_t orphan_grace_ms_;
  int64_t lease_ms_;
  int64_t snapshot_interval_ms_;
  std::string host_id_;
  sdk::Metric ticks_, tick_seconds_, inputs_dropped_, inputs_rejected_, frame_bytes_, rooms_gauge_,
      relay_dropped_;

  std::shared_ptr<Accounts> accounts_ = std::make_shared<Accounts>();
  std::array<std::mutex, kRoomLocks> room_locks_;  // by room id: a room's owner is settled once
  std::mutex handover_mu_;
  std::string handover_id_;   // of the last save_state
  int handover_outcome_ = 0;  // 0: not settled; 1: this generation went on; 2: the next took over
  std::mutex rooms_mu_;
  std::map<std::string, std::shared_ptr<RoomHost>> rooms_;
  std::map<std::string, RelayedRoomState> relayed_;

  static constexpr size_t kOutboxLimit = 10'000;
  std::mutex outbox_mu_;
  std::deque<std::pair<std::string, rec::Relay>> outbox_;
  bool flushing_ = false;

  sdk::Subscription relay_subscription_;
  sdk::Timer keeper_;
};

void PlayReader::on_message(const pb::ClientMessage& message) {
  plugin_.on_message(session_, principal_, message);
}
void PlayReader::on_half_close() {
  plugin_.on_end(session_, false);
}
void PlayReader::on_cancel() {
  plugin_.on_end(session_, true);
}
std::optional<std::string> PlayReader::detach() {
  return plugin_.detach(session_, principal_);
}

}  // namespace

GAMEVERSE_PLUGIN(
    WorldPlugin, "world-state", "0.1.0",
    "Authoritative rooms: ticks, per-client deltas within an area of interest, rooms across hosts")
