#include "domain/room.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "domain/wire.hpp"

namespace gameverse::world {

namespace {

// Field numbers of gameverse/world/v1/world.proto.
namespace f {
constexpr uint32_t kServerSnapshot = 2, kServerDelta = 3;
constexpr uint32_t kStateId = 1, kStateType = 2, kStateOwner = 3, kStateX = 4, kStateY = 5, kStateZ = 6,
                   kStateComponents = 7;
constexpr uint32_t kComponentName = 1, kComponentValue = 2;
constexpr uint32_t kUpdateId = 1, kUpdateDx = 2, kUpdateDy = 3, kUpdateDz = 4, kUpdateComponents = 5;
constexpr uint32_t kSnapshotTick = 1, kSnapshotEntities = 2, kSnapshotTickUnixMs = 3;
constexpr uint32_t kDeltaTick = 1, kDeltaBase = 2, kDeltaCreated = 3, kDeltaUpdated = 4, kDeltaRemoved = 5,
                   kDeltaMoves = 6, kDeltaTickUnixMs = 7, kDeltaInputsDropped = 8;
}  // namespace f

void component(std::string& out, uint32_t field, const std::string& name, const std::string& value) {
  std::string c;
  wire::bytes_field(c, f::kComponentName, name);
  if (!value.empty()) wire::bytes_field(c, f::kComponentValue, value);
  wire::bytes_field(out, field, c);
}

bool valid_name(const std::string& name, size_t max) {
  if (name.empty() || name.size() > max) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == ':' || c == '/';
  });
}

std::optional<Rejection> reject(const Input& input, std::string field, std::string reason) {
  return Rejection{{}, input.seq, std::move(field), std::move(reason)};
}

std::optional<Rejection> check_position(const Input& input, const std::string& field, const Position& p,
                                        const Limits& limits) {
  for (double v : {p.x, p.y, p.z}) {
    if (!std::isfinite(v)) return reject(input, field, "is not a finite number");
    if (std::fabs(v) > limits.max_coordinate_m) {
      return reject(
          input, field,
          "is outside the world (|coordinate| at most " + std::to_string(limits.max_coordinate_m) + " m)");
    }
  }
  return std::nullopt;
}

std::optional<Rejection> check_components(const Input& input, const std::string& field,
                                          const std::vector<std::pair<std::string, std::string>>& components,
                                          const Limits& limits) {
  if (components.size() > limits.max_components_per_entity) {
    return reject(input, field,
                  "has more than " + std::to_string(limits.max_components_per_entity) + " components");
  }
  for (const auto& [name, value] : components) {
    if (!valid_name(name, 64)) return reject(input, field + ".name", "must be 1-64 of [A-Za-z0-9_.:/-]");
    if (value.size() > limits.max_component_bytes) {
      return reject(input, field + ".value",
                    "is longer than " + std::to_string(limits.max_component_bytes) + " bytes");
    }
  }
  return std::nullopt;
}

int64_t sq(int64_t v) {
  return v * v;
}

}  // namespace

std::optional<Rejection> check_shape(const Input& input, const Limits& limits) {
  switch (input.kind) {
    case Input::Kind::kSpawn:
      if (!valid_name(input.type, limits.max_type_bytes)) {
        return reject(input, "input.spawn.type",
                      "must be 1-" + std::to_string(limits.max_type_bytes) + " of [A-Za-z0-9_.:/-]");
      }
      if (auto r = check_position(input, "input.spawn.position", input.position, limits)) return r;
      return check_components(input, "input.spawn.components", input.components, limits);
    case Input::Kind::kMove:
      if (input.entity_id == 0) return reject(input, "input.move.entity_id", "is missing");
      return check_position(input, "input.move.position", input.position, limits);
    case Input::Kind::kDespawn:
      if (input.entity_id == 0) return reject(input, "input.despawn.entity_id", "is missing");
      return std::nullopt;
    case Input::Kind::kSetComponent:
      if (input.entity_id == 0) return reject(input, "input.set_component.entity_id", "is missing");
      if (input.components.size() != 1) return reject(input, "input.set_component.component", "is missing");
      return check_components(input, "input.set_component.component", input.components, limits);
  }
  return reject(input, "input.action", "is missing");
}

Room::Room(std::string id, Limits limits) : id_(std::move(id)), limits_(limits) {}

Quantized Room::quantize(const Position& p) const {
  const double per_m = 1000.0 / limits_.position_resolution_mm;
  return {static_cast<int32_t>(std::lround(p.x * per_m)), static_cast<int32_t>(std::lround(p.y * per_m)),
          static_cast<int32_t>(std::lround(p.z * per_m))};
}

int64_t Room::cell_of(int32_t q) const {
  const double cell_units = limits_.aoi_cell_m * 1000.0 / limits_.position_resolution_mm;
  return static_cast<int64_t>(std::floor(q / cell_units));
}

void Room::grid_add(Entity& e) {
  auto& cell = grid_[cell_key(cell_of(e.position.x), cell_of(e.position.y))];
  e.grid_index = cell.size();
  cell.push_back(&e);
}

void Room::note_change(uint64_t id) {
  const uint64_t at = change_tick();
  if (changed_.empty() || changed_.back().first != at) changed_.emplace_back(at, std::vector<uint64_t>());
  changed_.back().second.push_back(id);
}

// Constant time however crowded the cell: each entity knows its place in it.
void Room::grid_remove(const Entity& e) {
  auto it = grid_.find(cell_key(cell_of(e.position.x), cell_of(e.position.y)));
  if (it == grid_.end()) return;
  auto& cell = it->second;
  if (e.grid_index >= cell.size() || cell[e.grid_index] != &e) return;
  cell[e.grid_index] = cell.back();
  cell[e.grid_index]->grid_index = e.grid_index;
  cell.pop_back();
  if (cell.empty()) grid_.erase(it);
}

const Entity* Room::entity(uint64_t id) const {
  auto it = entities_.find(id);
  return it == entities_.end() ? nullptr : &it->second;
}

const Client* Room::client(const std::string& id) const {
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : &it->second;
}

bool Room::join(const std::string& client_id, Position view) {
  auto it = clients_.find(client_id);
  if (it == clients_.end()) {
    if (clients_.size() >= limits_.max_clients) return false;
    it = clients_.emplace(client_id, Client{}).first;
    it->second.id = client_id;
    for (const auto& [id, e] : entities_) {  // a returning owner keeps what it left behind
      if (e.owner == client_id) {
        ++it->second.entities_owned;
        if (it->second.focus_entity == 0) it->second.focus_entity = id;
      }
    }
  }
  Client& c = it->second;
  c.view = quantize(view);
  c.attached = true;
  // A new stream holds nothing: it starts from a snapshot, at once.
  c.wants_snapshot = true;
  c.last_snapshot_tick = 0;
  c.acked_tick = 0;
  c.known.clear();
  c.known_complete = false;
  c.in_flight.clear();
  return true;
}

void Room::leave(const std::string& client_id) {
  auto it = clients_.find(client_id);
  if (it == clients_.end()) return;
  std::vector<uint64_t> owned;
  for (const auto& [id, e] : entities_) {
    if (e.owner == client_id) owned.push_back(id);
  }
  for (uint64_t id : owned) remove_entity(id);
  clients_.erase(it);
  queue_.erase(
      std::remove_if(queue_.begin(), queue_.end(), [&](const auto& q) { return q.first == client_id; }),
      queue_.end());
}

size_t Room::remove_entities_of_absent_clients() {
  std::vector<uint64_t> orphans;
  for (const auto& [id, e] : entities_) {
    if (!clients_.contains(e.owner)) orphans.push_back(id);
  }
  for (uint64_t id : orphans) remove_entity(id);
  return orphans.size();
}

void Room::set_attached(const std::string& client_id, bool attached) {
  auto it = clients_.find(client_id);
  if (it != clients_.end()) it->second.attached = attached;
}

void Room::request_snapshot(const std::string& client_id) {
  auto it = clients_.find(client_id);
  if (it != clients_.end()) it->second.wants_snapshot = true;
}

void Room::ack(const std::string& client_id, uint64_t tick) {
  auto it = clients_.find(client_id);
  if (it == clients_.end()) return;
  Client& c = it->second;
  // Only the tick of a frame in flight counts: any other (one never sent, or from the future)
  // would empty the frames in flight without moving the client on, and so undo max_unacked_frames.
  auto frame = std::find_if(c.in_flight.begin(), c.in_flight.end(),
                            [&](const SentFrame& f) { return f.tick == tick; });
  if (tick > tick_ || frame == c.in_flight.end()) return;
  // Only a frame built on the state the room holds for the client advances it: the client's
  // state at `tick` is that state with this frame applied.
  if (frame->base_tick == c.acked_tick) {
    for (const auto& [id, known] : frame->sent) c.known[id] = known;
    for (uint64_t id : frame->removed) c.known.erase(id);
    c.acked_tick = tick;
    c.known_complete = frame->complete;
    c.known_focus = frame->focus;
  }
  c.in_flight.erase(c.in_flight.begin(), frame + 1);
}

std::optional<Rejection> Room::enqueue(const std::string& client_id, Input input, bool* dropped) {
  *dropped = false;
  auto it = clients_.find(client_id);
  if (it == clients_.end()) return reject(input, "input", "the client has not joined the room");
  if (auto r = check_shape(input, limits_)) {
    r->client_id = client_id;
    return r;
  }
  Client& c = it->second;
  if (queue_.size() >= limits_.max_queued_inputs ||
      c.inputs_this_tick >= limits_.max_inputs_per_client_per_tick) {
    *dropped = true;
    ++c.inputs_dropped;
    ++inputs_dropped_total_;
    return std::nullopt;
  }
  ++c.inputs_this_tick;
  queue_.emplace_back(client_id, std::move(input));
  return std::nullopt;
}

void Room::remove_entity(uint64_t id) {
  auto it = entities_.find(id);
  if (it == entities_.end()) return;
  grid_remove(it->second);
  note_change(id);
  auto owner = clients_.find(it->second.owner);
  if (owner != clients_.end()) {
    Client& c = owner->second;
    if (c.entities_owned > 0) --c.entities_owned;
    if (c.focus_entity == id) {
      c.focus_entity = 0;
      for (const auto& [other, e] : entities_) {
        if (other != id && e.owner == c.id) {
          c.focus_entity = other;
          break;
        }
      }
    }
  }
  entities_.erase(it);
}

void Room::apply(const std::string& client_id, const Input& input, TickResult& result) {
  auto fail = [&](std::string field, std::string reason) {
    result.rejections.push_back({client_id, input.seq, std::move(field), std::move(reason)});
  };
  auto client = clients_.find(client_id);
  if (client == clients_.end()) return;  // it left
  Client& c = client->second;
  if (input.kind == Input::Kind::kSpawn) {
    if (entities_.size() >= limits_.max_entities) {
      return fail("input.spawn",
                  "the room holds its most entities (" + std::to_string(limits_.max_entities) + ")");
    }
    if (c.entities_owned >= limits_.max_entities_per_client) {
      return fail("input.spawn", "the client owns its most entities (" +
                                     std::to_string(limits_.max_entities_per_client) + ")");
    }
    Entity e;
    e.id = next_entity_id_++;
    e.type = input.type;
    e.owner = client_id;
    e.position = e.previous_position = quantize(input.position);
    e.position_tick = e.components_tick = tick_;
    for (const auto& [name, value] : input.components) e.components[name] = {value, tick_};
    ++c.entities_owned;
    if (c.focus_entity == 0) c.focus_entity = e.id;
    note_change(e.id);
    const uint64_t id = e.id;
    grid_add(entities_.emplace(id, std::move(e)).first->second);
    ++result.inputs_applied;
    return;
  }
  const char* field = input.kind == Input::Kind::kMove      ? "input.move.entity_id"
                      : input.kind == Input::Kind::kDespawn ? "input.despawn.entity_id"
                                                            : "input.set_component.entity_id";
  auto it = entities_.find(input.entity_id);
  if (it == entities_.end())
    return fail(field, "no entity " + std::to_string(input.entity_id) + " in the room");
  Entity& e = it->second;
  if (e.owner != client_id)
    return fail(field, "entity " + std::to_string(e.id) + " belongs to another client");
  switch (input.kind) {
    case Input::Kind::kMove: {
      const Quantized to = quantize(input.position);
      if (to == e.position) break;
      grid_remove(e);
      if (e.position_tick != tick_) e.previous_position = e.position;
      e.position = to;
      e.position_tick = tick_;
      grid_add(e);
      note_change(e.id);
      break;
    }
    case Input::Kind::kDespawn: remove_entity(e.id); break;
    case Input::Kind::kSetComponent: {
      const auto& [name, value] = input.components.front();
      if (!value.empty() && !e.components.contains(name) &&
          e.components.size() >= limits_.max_components_per_entity) {
        return fail(
            "input.set_component.component.name",
            "the entity has its most components (" + std::to_string(limits_.max_components_per_entity) + ")");
      }
      if (value.empty()) {
        // Removed: its slot is free again; a marker tells the clients that hold it.
        if (e.components.erase(name) == 0) break;
        e.removed_components[name] = tick_;
        if (e.removed_components.size() > limits_.max_components_per_entity) {
          auto oldest = std::min_element(e.removed_components.begin(), e.removed_components.end(),
                                         [](const auto& a, const auto& b) { return a.second < b.second; });
          e.removals_forgotten_tick = std::max(e.removals_forgotten_tick, oldest->second);
          e.removed_components.erase(oldest);
        }
      } else {
        e.components[name] = {value, tick_};
        e.removed_components.erase(name);
      }
      e.components_tick = tick_;
      note_change(e.id);
      break;
    }
    case Input::Kind::kSpawn: break;
  }
  ++result.inputs_applied;
}

const std::string& Room::state_bytes(Entity& e) {
  if (e.state_bytes_tick != 0 && e.state_bytes_tick >= e.position_tick &&
      e.state_bytes_tick >= e.components_tick)
    return e.state_bytes;
  e.state_bytes.clear();
  wire::uint_field(e.state_bytes, f::kStateId, e.id);
  wire::bytes_field(e.state_bytes, f::kStateType, e.type);
  wire::bytes_field(e.state_bytes, f::kStateOwner, e.owner);
  wire::sint_field(e.state_bytes, f::kStateX, e.position.x);
  wire::sint_field(e.state_bytes, f::kStateY, e.position.y);
  wire::sint_field(e.state_bytes, f::kStateZ, e.position.z);
  for (const auto& [name, c] : e.components) {
    if (!c.value.empty()) component(e.state_bytes, f::kStateComponents, name, c.value);
  }
  e.state_bytes_tick = std::max<uint64_t>(tick_, 1);
  return e.state_bytes;
}

Quantized Room::focus_of(const Client& client) const {
  if (client.focus_entity != 0) {
    if (const Entity* e = entity(client.focus_entity)) return e->position;
  }
  return client.view;
}

TickResult Room::step(int64_t now_unix_ms) {
  ++tick_;
  stepping_ = true;
  tick_unix_ms_ = now_unix_ms;
  moves_this_tick_.clear();
  const uint64_t kept_ticks = limits_.max_unacked_frames + 8;
  while (!changed_.empty() && changed_.front().first + kept_ticks < tick_) changed_.pop_front();
  TickResult result;
  result.tick = tick_;
  while (!queue_.empty()) {
    auto [client_id, input] = std::move(queue_.front());
    queue_.pop_front();
    apply(client_id, input, result);
  }
  const double per_tick = static_cast<double>(limits_.send_budget_bytes_per_s) / limits_.tick_hz;
  for (auto& [id, c] : clients_) {
    c.inputs_this_tick = 0;
    c.budget_bytes = std::min(c.budget_bytes + per_tick, 2 * per_tick);
    if (c.attached) build_frame(c, result);
  }
  stepping_ = false;
  return result;
}

void Room::build_frame(Client& c, TickResult& result) {
  // A snapshot goes whole, whatever the budget, and is counted against it: a client gets one a
  // second at most (its first at once), and another only once its budget is back out of the red.
  const bool snapshot_now =
      c.wants_snapshot &&
      (c.last_snapshot_tick == 0 || (tick_ - c.last_snapshot_tick >= limits_.tick_hz && c.budget_bytes >= 0));
  if (!snapshot_now && c.in_flight.size() >= limits_.max_unacked_frames) return;  // it catches up later
  const Quantized focus = focus_of(c);
  const double radius_units = limits_.aoi_radius_m * 1000.0 / limits_.position_resolution_mm;
  const int64_t r = static_cast<int64_t>(radius_units);
  const int64_t r2 = sq(r);
  auto in_view = [&](const Quantized& p) {
    return sq(int64_t{p.x} - focus.x) + sq(int64_t{p.y} - focus.y) <= r2;
  };
  const int64_t cx0 = cell_of(static_cast<int32_t>(std::max<int64_t>(focus.x - r, INT32_MIN)));
  const int64_t cx1 = cell_of(static_cast<int32_t>(std::min<int64_t>(focus.x + r, INT32_MAX)));
  const int64_t cy0 = cell_of(static_cast<int32_t>(std::max<int64_t>(focus.y - r, INT32_MIN)));
  const int64_t cy1 = cell_of(static_cast<int32_t>(std::min<int64_t>(focus.y + r, INT32_MAX)));

  if (snapshot_now) {
    std::string body;
    wire::uint_field(body, f::kSnapshotTick, tick_);
    c.known.clear();
    for (int64_t cx = cx0; cx <= cx1; ++cx) {
      for (int64_t cy = cy0; cy <= cy1; ++cy) {
        auto cell = grid_.find(cell_key(cx, cy));
        if (cell == grid_.end()) continue;
        for (Entity* entity : cell->second) {
          Entity& e = *entity;
          if (!in_view(e.position)) continue;
          wire::bytes_field(body, f::kSnapshotEntities, state_bytes(e));
          c.known[e.id] = Known{e.position, tick_};
        }
      }
    }
    wire::uint_field(body, f::kSnapshotTickUnixMs, static_cast<uint64_t>(tick_unix_ms_));
    // The client holds it from now on: later deltas build on it (one lost on the way is asked
    // for again with RequestSnapshot).
    c.acked_tick = tick_;
    c.known_complete = true;
    c.known_focus = focus;
    c.in_flight.clear();
    c.wants_snapshot = false;
    c.last_snapshot_tick = tick_;
    std::string message;
    wire::bytes_field(message, f::kServerSnapshot, body);
    c.budget_bytes -= static_cast<double>(message.size());
    result.frames.push_back({c.id, std::move(message), true});
    return;
  }

  // Unchanged entities need no look-up when `known` is all there was in view around this same
  // focus, and the ticks since are all remembered.
  const bool fast =
      c.known_complete && c.known_focus == focus &&
      (c.acked_tick == tick_ - 1 || (!changed_.empty() && changed_.front().first <= c.acked_tick + 1));
  enum class Kind { kCreate, kUpdate, kMove };
  struct Change {
    uint64_t id;
    int64_t distance2;
    Kind kind;
    size_t estimate;
    Entity* entity;
  };
  std::vector<Change> changes;
  auto consider = [&](Entity& e) {
    const uint64_t id = e.id;
    if (!in_view(e.position)) return;
    if (fast && e.position_tick <= c.acked_tick && e.components_tick <= c.acked_tick) return;
    const int64_t d2 = sq(int64_t{e.position.x} - focus.x) + sq(int64_t{e.position.y} - focus.y);
    auto known = c.known.find(id);
    if (known == c.known.end()) {
      changes.push_back({id, d2, Kind::kCreate, state_bytes(e).size() + 3, &e});
    } else if (e.components_tick > known->second.state_tick) {
      // A removal it may not have seen is no longer remembered: the entity goes whole.
      if (e.removals_forgotten_tick > known->second.state_tick) {
        changes.push_back({id, d2, Kind::kCreate, state_bytes(e).size() + 3, &e});
      } else {
        changes.push_back({id, d2, Kind::kUpdate, 24, &e});
      }
    } else if (!(e.position == known->second.position)) {
      changes.push_back({id, d2, Kind::kMove, 6, &e});
    }
  };
  // On the fast path only what changed since the acknowledged tick can differ: walk that when it
  // is shorter than what the view's cells hold.
  std::vector<uint64_t> changed_ids;
  size_t in_cells = 0;
  if (fast) {
    for (const auto& [tick, ids] : changed_) {
      if (tick > c.acked_tick) changed_ids.insert(changed_ids.end(), ids.begin(), ids.end());
    }
    for (int64_t cx = cx0; cx <= cx1 && in_cells <= changed_ids.size(); ++cx) {
      for (int64_t cy = cy0; cy <= cy1; ++cy) {
        auto cell = grid_.find(cell_key(cx, cy));
        if (cell != grid_.end()) in_cells += cell->second.size();
      }
    }
  }
  if (fast && changed_ids.size() < in_cells) {
    std::sort(changed_ids.begin(), changed_ids.end());
    changed_ids.erase(std::unique(changed_ids.begin(), changed_ids.end()), changed_ids.end());
    for (uint64_t id : changed_ids) {
      auto it = entities_.find(id);
      if (it != entities_.end()) consider(it->second);
    }
  } else {
    for (int64_t cx = cx0; cx <= cx1; ++cx) {
      for (int64_t cy = cy0; cy <= cy1; ++cy) {
        auto cell = grid_.find(cell_key(cx, cy));
        if (cell == grid_.end()) continue;
        for (Entity* entity : cell->second) consider(*entity);
      }
    }
  }
  std::vector<uint64_t> removed;
  auto gone = [&](uint64_t id) {
    const Entity* e = entity(id);
    return e == nullptr || !in_view(e->position);
  };
  if (fast) {
    // Only what changed since the acknowledged tick can have left the view.
    for (const auto& [tick, ids] : changed_) {
      if (tick <= c.acked_tick) continue;
      for (uint64_t id : ids) {
        if (c.known.contains(id) && gone(id)) removed.push_back(id);
      }
    }
    std::sort(removed.begin(), removed.end());
    removed.erase(std::unique(removed.begin(), removed.end()), removed.end());
  } else {
    for (const auto& [id, known] : c.known) {
      if (gone(id)) removed.push_back(id);
    }
  }
  // Over its budget, the nearest changes go; the others stay different from what the client
  // acknowledged and so are sent by a later frame.
  size_t estimate = 16 + removed.size() * 4;
  for (const Change& change : changes) estimate += change.estimate;
  bool complete = true;
  if (static_cast<double>(estimate) > c.budget_bytes) {
    std::sort(changes.begin(), changes.end(),
              [](const Change& a, const Change& b) { return a.distance2 < b.distance2; });
    double left = c.budget_bytes - 16 - static_cast<double>(removed.size() * 4);
    size_t keep = 0;
    while (keep < changes.size() && left > 0) left -= static_cast<double>(changes[keep++].estimate);
    complete = keep == changes.size();
    changes.resize(keep);
  }
  if (changes.empty() && removed.empty() && c.inputs_dropped == 0) {
    // Nothing new: still a frame, so that the client sees the tick and acks keep flowing.
  }
  std::sort(changes.begin(), changes.end(), [](const Change& a, const Change& b) { return a.id < b.id; });

  SentFrame frame;
  frame.tick = tick_;
  frame.base_tick = c.acked_tick;
  frame.complete = complete;
  frame.focus = focus;
  std::string body;
  wire::uint_field(body, f::kDeltaTick, tick_);
  wire::uint_field(body, f::kDeltaBase, c.acked_tick);
  std::string moves;
  uint64_t previous_move = 0;
  for (const Change& change : changes) {
    Entity& e = *change.entity;
    if (change.kind == Kind::kCreate) {
      wire::bytes_field(body, f::kDeltaCreated, state_bytes(e));
    } else {
      const Known& known = c.known.at(e.id);
      const int64_t dx = int64_t{e.position.x} - known.position.x;
      const int64_t dy = int64_t{e.position.y} - known.position.y;
      const int64_t dz = int64_t{e.position.z} - known.position.z;
      if (change.kind == Kind::kUpdate) {
        std::string update;
        wire::uint_field(update, f::kUpdateId, e.id);
        wire::sint_field(update, f::kUpdateDx, dx);
        wire::sint_field(update, f::kUpdateDy, dy);
        wire::sint_field(update, f::kUpdateDz, dz);
        for (const auto& [name, value] : e.components) {
          if (value.changed_tick > known.state_tick)
            component(update, f::kUpdateComponents, name, value.value);
        }
        for (const auto& [name, removed_tick] : e.removed_components) {
          if (removed_tick > known.state_tick) component(update, f::kUpdateComponents, name, {});
        }
        wire::bytes_field(body, f::kDeltaUpdated, update);
      } else {
        wire::varint(moves, wire::zigzag(static_cast<int64_t>(e.id - previous_move)));
        previous_move = e.id;
        if (e.position_tick == tick_ && known.position == e.previous_position) {
          // The common case: the client holds the last tick's position; the move is this tick's,
          // encoded once for every client that holds the same.
          auto [it, fresh] = moves_this_tick_.try_emplace(e.id);
          if (fresh) {
            wire::varint(it->second, wire::zigzag(dx));
            wire::varint(it->second, wire::zigzag(dy));
            wire::varint(it->second, wire::zigzag(dz));
            result.bytes_encoded_once += it->second.size();
          }
          moves += it->second;
        } else {
          wire::varint(moves, wire::zigzag(dx));
          wire::varint(moves, wire::zigzag(dy));
          wire::varint(moves, wire::zigzag(dz));
        }
      }
    }
    frame.sent.emplace_back(e.id, Known{e.position, tick_});
  }
  if (!removed.empty()) {
    std::string packed;
    for (uint64_t id : removed) wire::varint(packed, id);
    wire::bytes_field(body, f::kDeltaRemoved, packed);
  }
  if (!moves.empty()) wire::bytes_field(body, f::kDeltaMoves, moves);
  wire::uint_field(body, f::kDeltaTickUnixMs, static_cast<uint64_t>(tick_unix_ms_));
  wire::uint_field(body, f::kDeltaInputsDropped, c.inputs_dropped);
  c.inputs_dropped = 0;
  frame.removed = std::move(removed);
  c.in_flight.push_back(std::move(frame));
  std::string message;
  wire::bytes_field(message, f::kServerDelta, body);
  c.budget_bytes -= static_cast<double>(message.size());
  result.frames.push_back({c.id, std::move(message), false});
}

RoomImage Room::image(bool with_clients) const {
  RoomImage image;
  image.id = id_;
  image.tick = tick_;
  image.tick_unix_ms = tick_unix_ms_;
  image.next_entity_id = next_entity_id_;
  image.entities.reserve(entities_.size());
  for (const auto& [id, e] : entities_) {
    Entity copy = e;
    copy.state_bytes.clear();
    copy.state_bytes_tick = 0;
    image.entities.push_back(std::move(copy));
  }
  if (with_clients) {
    for (const auto& [id, c] : clients_) {
      RoomImage::ClientImage ci{c.id, c.view, c.focus_entity, c.acked_tick, {}};
      ci.known.assign(c.known.begin(), c.known.end());
      image.clients.push_back(std::move(ci));
    }
    image.queued.assign(queue_.begin(), queue_.end());
  }
  return image;
}

Room Room::restore(const RoomImage& image, Limits limits, bool with_clients) {
  Room room(image.id, limits);
  room.tick_ = image.tick;
  room.tick_unix_ms_ = image.tick_unix_ms;
  room.next_entity_id_ = image.next_entity_id;
  for (const Entity& e : image.entities) {
    Entity& restored = room.entities_.emplace(e.id, e).first->second;
    // Removal markers are not kept in an image: a client behind on the entity gets it whole.
    restored.removed_components.clear();
    restored.removals_forgotten_tick = std::max(e.removals_forgotten_tick, e.components_tick);
    room.grid_add(restored);
  }
  if (with_clients) {
    for (const auto& ci : image.clients) {
      Client c;
      c.id = ci.id;
      c.view = ci.view;
      c.focus_entity = ci.focus_entity;
      c.acked_tick = ci.acked_tick;
      c.known.insert(ci.known.begin(), ci.known.end());
      c.attached = false;  // until its stream is back
      c.wants_snapshot = false;
      for (const auto& [id, e] : room.entities_) {
        if (e.owner == c.id) ++c.entities_owned;
      }
      room.clients_.emplace(c.id, std::move(c));
    }
    room.queue_.assign(image.queued.begin(), image.queued.end());
  }
  return room;
}

// --- ClientWorld --------------------------------------------------------------------------------

namespace {

bool read_component(std::string_view bytes, std::map<std::string, std::string>& into) {
  wire::Reader r(bytes);
  std::string name, value;
  while (r.next()) {
    if (r.field() == f::kComponentName) name = r.bytes();
    if (r.field() == f::kComponentValue) value = r.bytes();
  }
  if (!r.ok()) return false;
  if (value.empty()) {
    into.erase(name);
  } else {
    into[name] = value;
  }
  return true;
}

bool read_state(std::string_view bytes, std::map<uint64_t, ClientWorld::View>& into) {
  wire::Reader r(bytes);
  uint64_t id = 0;
  ClientWorld::View v;
  while (r.next()) {
    switch (r.field()) {
      case f::kStateId: id = r.value(); break;
      case f::kStateType: v.type = r.bytes(); break;
      case f::kStateOwner: v.owner = r.bytes(); break;
      case f::kStateX: v.position.x = static_cast<int32_t>(wire::unzigzag(r.value())); break;
      case f::kStateY: v.position.y = static_cast<int32_t>(wire::unzigzag(r.value())); break;
      case f::kStateZ: v.position.z = static_cast<int32_t>(wire::unzigzag(r.value())); break;
      case f::kStateComponents:
        if (!read_component(r.bytes(), v.components)) return false;
        break;
      default: break;
    }
  }
  if (!r.ok()) return false;
  into[id] = std::move(v);
  return true;
}

}  // namespace

ClientWorld::Applied ClientWorld::apply(std::string_view server_message) {
  wire::Reader outer(server_message);
  if (!outer.next()) return outer.ok() ? Applied::kOther : Applied::kMalformed;
  if (outer.field() == f::kServerSnapshot) {
    std::map<uint64_t, View> state;
    uint64_t tick = 0;
    int64_t at = 0;
    wire::Reader r(outer.bytes());
    while (r.next()) {
      if (r.field() == f::kSnapshotTick) tick = r.value();
      if (r.field() == f::kSnapshotTickUnixMs) at = static_cast<int64_t>(r.value());
      if (r.field() == f::kSnapshotEntities && !read_state(r.bytes(), state)) return Applied::kMalformed;
    }
    if (!r.ok()) return Applied::kMalformed;
    states_.clear();
    states_[tick] = state;
    current_ = std::move(state);
    tick_ = tick;
    tick_unix_ms_ = at;
    return Applied::kSnapshot;
  }
  if (outer.field() != f::kServerDelta) return Applied::kOther;
  wire::Reader r(outer.bytes());
  uint64_t tick = 0, base = 0;
  std::vector<std::string_view> created, updated;
  std::string_view removed, moves;
  int64_t at = 0;
  uint32_t dropped = 0;
  while (r.next()) {
    switch (r.field()) {
      case f::kDeltaTick: tick = r.value(); break;
      case f::kDeltaBase: base = r.value(); break;
      case f::kDeltaCreated: created.push_back(r.bytes()); break;
      case f::kDeltaUpdated: updated.push_back(r.bytes()); break;
      case f::kDeltaRemoved: removed = r.bytes(); break;
      case f::kDeltaMoves: moves = r.bytes(); break;
      case f::kDeltaTickUnixMs: at = static_cast<int64_t>(r.value()); break;
      case f::kDeltaInputsDropped: dropped = static_cast<uint32_t>(r.value()); break;
      default: break;
    }
  }
  if (!r.ok()) return Applied::kMalformed;
  auto base_state = states_.find(base);
  if (base_state == states_.end()) return Applied::kUnknownBase;
  std::map<uint64_t, View> state = base_state->second;
  for (std::string_view bytes : created) {
    if (!read_state(bytes, state)) return Applied::kMalformed;
  }
  auto shift = [&](uint64_t id, int64_t dx, int64_t dy, int64_t dz) -> View* {
    auto it = state.find(id);
    if (it == state.end()) return nullptr;
    it->second.position.x = static_cast<int32_t>(it->second.position.x + dx);
    it->second.position.y = static_cast<int32_t>(it->second.position.y + dy);
    it->second.position.z = static_cast<int32_t>(it->second.position.z + dz);
    return &it->second;
  };
  for (std::string_view bytes : updated) {
    wire::Reader u(bytes);
    uint64_t id = 0;
    int64_t d[3] = {0, 0, 0};
    std::vector<std::string_view> components;
    while (u.next()) {
      if (u.field() == f::kUpdateId) id = u.value();
      if (u.field() >= f::kUpdateDx && u.field() <= f::kUpdateDz)
        d[u.field() - f::kUpdateDx] = wire::unzigzag(u.value());
      if (u.field() == f::kUpdateComponents) components.push_back(u.bytes());
    }
    if (!u.ok()) return Applied::kMalformed;
    View* v = shift(id, d[0], d[1], d[2]);
    if (v == nullptr) return Applied::kMalformed;
    for (std::string_view c : components) {
      if (!read_component(c, v->components)) return Applied::kMalformed;
    }
  }
  uint64_t previous = 0;
  while (!moves.empty()) {
    int64_t n[4];
    for (int64_t& value : n) {
      auto v = wire::Reader::packed_next(moves);
      if (!v) return Applied::kMalformed;
      value = wire::unzigzag(*v);
    }
    previous += static_cast<uint64_t>(n[0]);
    if (shift(previous, n[1], n[2], n[3]) == nullptr) return Applied::kMalformed;
  }
  while (!removed.empty()) {
    auto v = wire::Reader::packed_next(removed);
    if (!v) return Applied::kMalformed;
    state.erase(*v);
  }
  states_[tick] = state;
  while (states_.size() > 128) states_.erase(states_.begin());
  current_ = std::move(state);
  tick_ = tick;
  tick_unix_ms_ = at;
  inputs_dropped_ += dropped;
  return Applied::kDelta;
}

void ClientWorld::forget_before(uint64_t tick) {
  states_.erase(states_.begin(), states_.lower_bound(tick));
}

}  // namespace gameverse::world
