// A room: entities simulated at a fixed tick rate from the inputs queued for each tick, and what
// each client is sent — only what changed within its area of interest since the tick it
// acknowledged, within its send budget, nearest first. Plain C++: no SDK, no protobuf.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace gameverse::world {

struct Limits {
  uint32_t tick_hz = 20;
  uint32_t position_resolution_mm = 10;  // one quantized unit
  double max_coordinate_m = 10000;       // |x|, |y|, |z| at most
  double aoi_radius_m = 50;              // a client sees entities within this distance (x, y)
  double aoi_cell_m = 25;                // the spatial grid's cell side
  size_t max_clients = 256;
  size_t max_entities = 10000;
  size_t max_entities_per_client = 64;
  size_t max_components_per_entity = 16;
  size_t max_component_bytes = 1024;
  size_t max_type_bytes = 64;
  size_t max_queued_inputs = 4096;            // per room; more are dropped and counted
  size_t max_inputs_per_client_per_tick = 8;  // more are dropped and counted
  size_t max_unacked_frames = 16;             // a client this far behind gets nothing until it acks
  uint64_t send_budget_bytes_per_s = 16384;   // per client; over it, the nearest changes go first
};

struct Position {
  double x = 0, y = 0, z = 0;
};

struct Quantized {
  int32_t x = 0, y = 0, z = 0;
  bool operator==(const Quantized&) const = default;
};

struct ComponentValue {
  std::string value;
  uint64_t changed_tick = 0;
};

struct Entity {
  uint64_t id = 0;
  std::string type;
  std::string owner;  // client id
  Quantized position;
  Quantized previous_position;   // before the tick in position_tick
  uint64_t position_tick = 0;    // tick of the last move
  uint64_t components_tick = 0;  // tick of the last component change
  std::map<std::string, ComponentValue> components;
  // Components removed lately (name -> tick), so that a delta can tell a client to drop them; at
  // most max_components_per_entity, the oldest forgotten first.
  std::map<std::string, uint64_t> removed_components;
  // The latest tick of a removal no longer remembered: a client whose state of the entity is
  // older gets the entity whole.
  uint64_t removals_forgotten_tick = 0;
  size_t grid_index = 0;  // its place in its grid cell
  // The entity as EntityState bytes, kept until it changes (encoded once, sent to every client).
  std::string state_bytes;
  uint64_t state_bytes_tick = 0;  // the tick it was encoded at; 0: none
};

// What a client asks for, as the room applies it at the next tick.
struct Input {
  enum class Kind { kSpawn = 1, kMove, kDespawn, kSetComponent };
  Kind kind = Kind::kMove;
  uint64_t seq = 0;
  uint64_t entity_id = 0;
  std::string type;
  Position position;
  std::vector<std::pair<std::string, std::string>> components;
};

struct Rejection {
  std::string client_id;
  uint64_t seq = 0;
  std::string field;
  std::string reason;
};

// The checks an input passes before it is queued: its shape alone. Empty when fine, else the
// field at fault and why. Ownership and existence are checked at the tick.
std::optional<Rejection> check_shape(const Input& input, const Limits& limits);

// What a client holds of one entity: its state as of `state_tick`.
struct Known {
  Quantized position;
  uint64_t state_tick = 0;
};

// One frame on its way to a client, until acknowledged.
struct SentFrame {
  uint64_t tick = 0;
  uint64_t base_tick = 0;
  bool snapshot = false;
  bool complete = false;                         // it held every change in view (the budget cut none)
  Quantized focus;                               // the centre of interest it was built around
  std::vector<std::pair<uint64_t, Known>> sent;  // entities the frame set
  std::vector<uint64_t> removed;
};

struct Client {
  std::string id;
  Quantized view;             // the centre of interest while it owns nothing
  uint64_t focus_entity = 0;  // its first entity: the centre of interest
  bool attached = true;       // a stream is there to take its frames
  bool wants_snapshot = true;
  uint64_t last_snapshot_tick = 0;
  uint64_t acked_tick = 0;  // the tick `known` is the state of
  std::unordered_map<uint64_t, Known> known;
  // `known` is everything in view around known_focus at acked_tick: an entity unchanged since
  // then, in view around the same focus, is known as it is and needs no look-up.
  bool known_complete = false;
  Quantized known_focus;
  std::deque<SentFrame> in_flight;
  double budget_bytes = 0;
  uint32_t inputs_this_tick = 0;
  uint32_t inputs_dropped = 0;  // since its last frame
  size_t entities_owned = 0;
};

// A frame for one client: ServerMessage bytes (a Snapshot or a Delta).
struct Outgoing {
  std::string client_id;
  std::string bytes;
  bool snapshot = false;
};

struct TickResult {
  uint64_t tick = 0;
  std::vector<Outgoing> frames;
  std::vector<Rejection> rejections;
  size_t inputs_applied = 0;
  size_t bytes_encoded_once = 0;  // entity bytes encoded this tick (each reused by every client)
};

// The room's state as handed over at a reload or persisted as a snapshot.
struct RoomImage {
  std::string id;
  uint64_t tick = 0;
  int64_t tick_unix_ms = 0;
  uint64_t next_entity_id = 1;
  std::vector<Entity> entities;
  struct ClientImage {
    std::string id;
    Quantized view;
    uint64_t focus_entity = 0;
    uint64_t acked_tick = 0;
    std::vector<std::pair<uint64_t, Known>> known;
  };
  std::vector<ClientImage> clients;  // empty in a persisted snapshot
  std::vector<std::pair<std::string, Input>> queued;
};

class Room {
 public:
  Room(std::string id, Limits limits);
  static Room restore(const RoomImage& image, Limits limits, bool with_clients);

  const std::string& id() const { return id_; }
  uint64_t tick() const { return tick_; }
  int64_t tick_unix_ms() const { return tick_unix_ms_; }
  const Limits& limits() const { return limits_; }
  size_t entity_count() const { return entities_.size(); }
  size_t client_count() const { return clients_.size(); }
  const Entity* entity(uint64_t id) const;
  const std::unordered_map<uint64_t, Entity>& entities() const { return entities_; }
  const Client* client(const std::string& id) const;
  uint64_t inputs_dropped_total() const { return inputs_dropped_total_; }

  // A client joins (or comes back: its entities are kept, and it starts again from a snapshot, as
  // its new stream holds nothing). False when the room is full.
  bool join(const std::string& client_id, Position view);
  // Its entities go with it; the others see them removed in the next frame.
  void leave(const std::string& client_id);
  // Despawns the entities whose owner is not in the room (after a take-over, the clients that did
  // not come back). Returns how many.
  size_t remove_entities_of_absent_clients();
  void set_attached(const std::string& client_id, bool attached);
  void request_snapshot(const std::string& client_id);
  void ack(const std::string& client_id, uint64_t tick);

  // Queues an input for the next tick: false (and counted) when the room's queue or the client's
  // share of this tick is full. Shape problems come back as a rejection.
  std::optional<Rejection> enqueue(const std::string& client_id, Input input, bool* dropped);

  // Applies the queued inputs, advances the tick and builds each attached client's frame.
  TickResult step(int64_t now_unix_ms);

  RoomImage image(bool with_clients) const;

  Quantized quantize(const Position& p) const;

 private:
  struct Cell {
    int64_t x, y;
  };
  static int64_t cell_key(int64_t cx, int64_t cy) { return (cx << 32) ^ (cy & 0xffffffff); }
  int64_t cell_of(int32_t q) const;
  void grid_add(Entity& e);
  void grid_remove(const Entity& e);
  // Notes a change for the frames: within a tick under that tick; between ticks (a client left)
  // under the next one, which the clients have not acknowledged yet.
  void note_change(uint64_t id);
  uint64_t change_tick() const { return stepping_ ? tick_ : tick_ + 1; }
  void apply(const std::string& client_id, const Input& input, TickResult& result);
  void remove_entity(uint64_t id);
  const std::string& state_bytes(Entity& e);
  void build_frame(Client& client, TickResult& result);
  Quantized focus_of(const Client& client) const;

  std::string id_;
  Limits limits_;
  uint64_t tick_ = 0;
  bool stepping_ = false;  // within step()
  int64_t tick_unix_ms_ = 0;
  uint64_t next_entity_id_ = 1;
  std::unordered_map<uint64_t, Entity> entities_;
  // Cells of the grid: the entities in each (pointers into entities_, whose nodes do not move).
  std::unordered_map<int64_t, std::vector<Entity*>> grid_;
  // The entities that changed (moved, spawned, despawned, a component) in each recent tick, oldest
  // first: what may have left a client's view since the tick it acknowledged.
  std::deque<std::pair<uint64_t, std::vector<uint64_t>>> changed_;
  std::map<std::string, Client> clients_;
  std::deque<std::pair<std::string, Input>> queue_;
  uint64_t inputs_dropped_total_ = 0;
  // Per tick: each moved entity's (dx, dy, dz) from its previous position, encoded once.
  std::unordered_map<uint64_t, std::string> moves_this_tick_;
};

// The state a client builds from its frames: Snapshot and Delta bytes (ServerMessage) applied in
// order. Keeps the state of recent ticks, as a Delta applies to its base tick's state.
class ClientWorld {
 public:
  struct View {
    std::string type, owner;
    Quantized position;
    std::map<std::string, std::string> components;
  };
  enum class Applied { kSnapshot, kDelta, kOther, kUnknownBase, kMalformed };
  Applied apply(std::string_view server_message);
  uint64_t tick() const { return tick_; }
  int64_t tick_unix_ms() const { return tick_unix_ms_; }
  uint32_t inputs_dropped() const { return inputs_dropped_; }
  const std::map<uint64_t, View>& entities() const { return current_; }
  // Forgets the states before `tick` (the client acknowledged it).
  void forget_before(uint64_t tick);

 private:
  std::map<uint64_t, std::map<uint64_t, View>> states_;  // tick -> state
  std::map<uint64_t, View> current_;
  uint64_t tick_ = 0;
  bool stepping_ = false;  // within step()
  int64_t tick_unix_ms_ = 0;
  uint32_t inputs_dropped_ = 0;
};

}  // namespace gameverse::world
