// The room without a host: ticks, inputs and their validation, ownership, the area of interest,
// deltas against acknowledged state (decoded by the same client model a game would use), send
// budgets and a room handed over as an image.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "domain/room.hpp"

namespace gameverse::world {
namespace {

Input spawn(uint64_t seq, double x, double y, std::string type = "avatar") {
  Input in;
  in.kind = Input::Kind::kSpawn;
  in.seq = seq;
  in.type = std::move(type);
  in.position = {x, y, 0};
  return in;
}
Input move(uint64_t seq, uint64_t id, double x, double y) {
  Input in;
  in.kind = Input::Kind::kMove;
  in.seq = seq;
  in.entity_id = id;
  in.position = {x, y, 0};
  return in;
}

void enqueue(Room& room, const std::string& client, Input in) {
  bool dropped = false;
  auto rejected = room.enqueue(client, std::move(in), &dropped);
  ASSERT_FALSE(rejected) << rejected->field << " " << rejected->reason;
  ASSERT_FALSE(dropped);
}

// Steps the room, feeds each client's frame to its model and acknowledges it.
struct Harness {
  explicit Harness(Room r) : room(std::move(r)) {}
  Room room;
  std::map<std::string, ClientWorld> worlds;
  std::map<std::string, size_t> bytes;
  int64_t now = 1'000;
  TickResult step(bool ack = true) {
    TickResult r = room.step(now += 50);
    for (const Outgoing& out : r.frames) {
      ClientWorld& w = worlds[out.client_id];
      const auto applied = w.apply(out.bytes);
      EXPECT_TRUE(applied == ClientWorld::Applied::kSnapshot || applied == ClientWorld::Applied::kDelta)
          << static_cast<int>(applied);
      bytes[out.client_id] += out.bytes.size();
      if (ack) room.ack(out.client_id, w.tick());
    }
    return r;
  }
};

Limits small() {
  Limits l;
  l.aoi_radius_m = 50;
  l.aoi_cell_m = 25;
  return l;
}

TEST(WorldRoom, TicksApplyInputsAndClientsSeeTheSameWorld) {
  Harness h(Room("r", small()));
  ASSERT_TRUE(h.room.join("a", {}));
  ASSERT_TRUE(h.room.join("b", {}));
  enqueue(h.room, "a", spawn(1, 1, 2));
  const TickResult first = h.step();
  EXPECT_EQ(first.tick, 1u);
  EXPECT_EQ(first.inputs_applied, 1u);
  ASSERT_EQ(first.frames.size(), 2u);
  EXPECT_TRUE(first.frames[0].snapshot);
  const uint64_t id = h.room.entity_count() == 1 ? 1 : 0;
  ASSERT_EQ(id, 1u);
  for (int i = 1; i <= 20; ++i) {
    enqueue(h.room, "a", move(10 + i, id, 1 + i, 2 - i * 0.5));
    h.step();
  }
  for (const char* c : {"a", "b"}) {
    const auto& e = h.worlds[c].entities();
    ASSERT_EQ(e.size(), 1u) << c;
    EXPECT_EQ(e.at(id).owner, "a");
    EXPECT_EQ(e.at(id).position, h.room.quantize({21, -8, 0})) << c;
    EXPECT_EQ(h.worlds[c].tick(), 21u);
  }
}

TEST(WorldRoom, AClientMovesOnlyItsOwnEntitiesAndBadInputsAreRefusedNamingTheField) {
  Harness h(Room("r", small()));
  h.room.join("a", {});
  h.room.join("b", {});
  enqueue(h.room, "a", spawn(1, 0, 0));
  h.step();
  enqueue(h.room, "b", move(7, 1, 5, 5));
  const TickResult r = h.step();
  ASSERT_EQ(r.rejections.size(), 1u);
  EXPECT_EQ(r.rejections[0].client_id, "b");
  EXPECT_EQ(r.rejections[0].seq, 7u);
  EXPECT_EQ(r.rejections[0].field, "input.move.entity_id");
  EXPECT_NE(r.rejections[0].reason.find("another client"), std::string::npos);
  EXPECT_EQ(h.room.entity(1)->position, h.room.quantize({0, 0, 0}));

  bool dropped = false;
  auto far = h.room.enqueue("a", move(8, 1, 1e9, 0), &dropped);
  ASSERT_TRUE(far);
  EXPECT_EQ(far->field, "input.move.position");
  auto nan = h.room.enqueue("a", move(9, 1, std::nan(""), 0), &dropped);
  ASSERT_TRUE(nan);
  EXPECT_EQ(nan->field, "input.move.position");
  Input bad_type = spawn(10, 0, 0, "");
  EXPECT_EQ(h.room.enqueue("a", bad_type, &dropped)->field, "input.spawn.type");
  Input big = spawn(11, 0, 0);
  big.components.emplace_back("hp", std::string(5000, 'x'));
  EXPECT_EQ(h.room.enqueue("a", big, &dropped)->field, "input.spawn.components.value");
  EXPECT_EQ(h.room.enqueue("a", move(12, 0, 0, 0), &dropped)->field, "input.move.entity_id");
  enqueue(h.room, "a", move(13, 99, 0, 0));
  EXPECT_EQ(h.step().rejections.at(0).field, "input.move.entity_id");
  // The room goes on.
  enqueue(h.room, "a", move(14, 1, 3, 3));
  EXPECT_TRUE(h.step().rejections.empty());
  EXPECT_EQ(h.worlds["b"].entities().at(1).position, h.room.quantize({3, 3, 0}));
}

TEST(WorldRoom, TheInputQueueIsBoundedAndDropsAreCountedNotFatal) {
  Limits l = small();
  l.max_inputs_per_client_per_tick = 3;
  Harness h(Room("r", l));
  h.room.join("a", {});
  enqueue(h.room, "a", spawn(1, 0, 0));
  h.step();
  size_t dropped_count = 0;
  for (int i = 0; i < 10; ++i) {
    bool dropped = false;
    EXPECT_FALSE(h.room.enqueue("a", move(2 + i, 1, i, 0), &dropped));
    dropped_count += dropped ? 1 : 0;
  }
  EXPECT_EQ(dropped_count, 7u);
  EXPECT_EQ(h.room.inputs_dropped_total(), 7u);
  h.step();
  EXPECT_EQ(h.worlds["a"].inputs_dropped(), 7u);
  EXPECT_EQ(h.room.entity(1)->position, h.room.quantize({2, 0, 0}));
}

TEST(WorldRoom, AClientSeesOnlyItsAreaOfInterestAndEntitiesEnterAndLeaveIt) {
  Harness h(Room("r", small()));
  h.room.join("near", {0, 0, 0});
  h.room.join("far", {1000, 1000, 0});
  h.room.join("mover", {});
  enqueue(h.room, "mover", spawn(1, 10, 0));
  h.step();
  EXPECT_EQ(h.worlds["near"].entities().size(), 1u);
  EXPECT_EQ(h.worlds["far"].entities().size(), 0u);
  enqueue(h.room, "mover", move(2, 1, 990, 990));
  h.step();
  EXPECT_EQ(h.worlds["near"].entities().size(), 0u);
  ASSERT_EQ(h.worlds["far"].entities().size(), 1u);
  EXPECT_EQ(h.worlds["far"].entities().at(1).type, "avatar");
  // Ticks where nothing in view changes carry nothing but the tick.
  const TickResult quiet = h.step();
  for (const Outgoing& out : quiet.frames) EXPECT_LT(out.bytes.size(), 24u) << out.client_id;
}

TEST(WorldRoom, ASlowClientCatchesUpWithOneDeltaAgainstWhatItAcknowledged) {
  Limits l = small();
  l.max_unacked_frames = 4;
  Harness h(Room("r", l));
  h.room.join("slow", {});
  h.room.join("mover", {});
  enqueue(h.room, "mover", spawn(1, 0, 0));
  h.step();
  // The slow client stops acknowledging: after four frames it gets none.
  size_t frames_for_slow = 0;
  for (int i = 1; i <= 30; ++i) {
    enqueue(h.room, "mover", move(1 + i, 1, i, 0));
    TickResult r = h.room.step(h.now += 50);
    for (const Outgoing& out : r.frames) {
      if (out.client_id == "slow") {
        ++frames_for_slow;
        if (i == 1) {
          ASSERT_EQ(h.worlds["slow"].apply(out.bytes), ClientWorld::Applied::kDelta);
        }
      } else {
        h.worlds[out.client_id].apply(out.bytes);
        h.room.ack(out.client_id, h.worlds[out.client_id].tick());
      }
    }
  }
  EXPECT_EQ(frames_for_slow, 4u);
  // It acknowledges what it has; the next frame brings it to the present in one step.
  h.room.ack("slow", h.worlds["slow"].tick());
  TickResult r = h.room.step(h.now += 50);
  size_t slow_frames = 0;
  for (const Outgoing& out : r.frames) {
    if (out.client_id != "slow") continue;
    ++slow_frames;
    ASSERT_EQ(h.worlds["slow"].apply(out.bytes), ClientWorld::Applied::kDelta);
  }
  EXPECT_EQ(slow_frames, 1u);
  EXPECT_EQ(h.worlds["slow"].entities().at(1).position, h.room.quantize({30, 0, 0}));
}

TEST(WorldRoom, ALostFrameIsHealedByTheNextDelta) {
  Harness h(Room("r", small()));
  h.room.join("a", {});
  h.room.join("m", {});
  enqueue(h.room, "m", spawn(1, 0, 0));
  h.step();
  for (int i = 1; i <= 10; ++i) {
    enqueue(h.room, "m", move(1 + i, 1, i, i));
    TickResult r = h.room.step(h.now += 50);
    for (const Outgoing& out : r.frames) {
      if (out.client_id == "a" && i % 3 == 0) continue;  // lost on the way
      ASSERT_EQ(h.worlds[out.client_id].apply(out.bytes), ClientWorld::Applied::kDelta);
      h.room.ack(out.client_id, h.worlds[out.client_id].tick());
    }
  }
  EXPECT_EQ(h.worlds["a"].entities().at(1).position, h.room.quantize({10, 10, 0}));
}

TEST(WorldRoom, AMoveSeenByManyClientsIsEncodedOnceATick) {
  Harness h(Room("r", small()));
  h.room.join("m", {});
  for (int i = 0; i < 50; ++i) h.room.join("c" + std::to_string(i), {});
  enqueue(h.room, "m", spawn(1, 0, 0));
  h.step();
  enqueue(h.room, "m", move(2, 1, 1, 1));
  const TickResult r = h.step();
  EXPECT_EQ(r.frames.size(), 51u);
  // (dx, dy, dz) = (100, 100, 0) units as zigzag varints: 2 + 2 + 1 bytes, once, not once a client.
  EXPECT_EQ(r.bytes_encoded_once, 5u);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(h.worlds["c" + std::to_string(i)].entities().at(1).position, h.room.quantize({1, 1, 0}));
  }
}

TEST(WorldRoom, SnapshotsOnRequestComeOnceASecondAtMost) {
  Harness h(Room("r", small()));  // 20 Hz
  h.room.join("a", {});
  h.step();
  size_t snapshots = 0;
  for (int i = 0; i < 40; ++i) {
    h.room.request_snapshot("a");
    for (const Outgoing& out : h.step().frames) snapshots += out.snapshot ? 1 : 0;
  }
  EXPECT_EQ(snapshots, 2u);
}

TEST(WorldRoom, ComponentsTravelAsOnlyWhatChanged) {
  Harness h(Room("r", small()));
  h.room.join("a", {});
  Input s = spawn(1, 0, 0);
  s.components = {{"hp", "100"}, {"name", "alice"}};
  enqueue(h.room, "a", s);
  h.step();
  Input set;
  set.kind = Input::Kind::kSetComponent;
  set.seq = 2;
  set.entity_id = 1;
  set.components = {{"hp", "90"}};
  enqueue(h.room, "a", set);
  const TickResult r = h.step();
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_EQ(r.frames[0].bytes.find("alice"), std::string::npos);
  EXPECT_EQ(h.worlds["a"].entities().at(1).components.at("hp"), "90");
  EXPECT_EQ(h.worlds["a"].entities().at(1).components.at("name"), "alice");
}

TEST(WorldRoom, OverItsBudgetAClientGetsTheNearestChangesFirstAndTheRestLater) {
  Limits l = small();
  l.aoi_radius_m = 1000;
  l.aoi_cell_m = 100;
  l.max_entities_per_client = 500;
  l.max_inputs_per_client_per_tick = 1000;
  l.send_budget_bytes_per_s = 20 * 400;  // 400 bytes a tick
  Harness h(Room("r", l));
  h.room.join("viewer", {});
  h.room.join("m", {});
  for (int i = 0; i < 200; ++i) enqueue(h.room, "m", spawn(i + 1, 500 - i * 2, 0));
  h.step();  // the snapshot: whole, whatever the budget
  for (int i = 0; i < 200; ++i) enqueue(h.room, "m", move(1000 + i, i + 1, 500 - i * 2, 5));
  // The snapshot overdrew the budget: frames come back once it refills, nearest changes first.
  const auto& seen = h.worlds["viewer"].entities();
  const int32_t moved_y = h.room.quantize({0, 5, 0}).y;
  auto moved = [&] {
    size_t n = 0;
    for (const auto& [id, v] : seen) n += v.position.y == moved_y ? 1 : 0;
    return n;
  };
  for (int i = 0; i < 100 && moved() == 0; ++i) h.step();
  ASSERT_GT(moved(), 0u);
  EXPECT_LT(moved(), 100u);
  // The entity nearest the viewer (the last spawned, at x = 102) moved first.
  EXPECT_EQ(seen.at(200).position.y, h.room.quantize({0, 5, 0}).y);
  EXPECT_NE(seen.at(1).position.y, h.room.quantize({0, 5, 0}).y);
  for (int i = 0; i < 40; ++i) h.step();
  for (const auto& [id, v] : h.worlds["viewer"].entities())
    EXPECT_EQ(v.position.y, h.room.quantize({0, 5, 0}).y) << id;
}

TEST(WorldRoom, ARoomHandedOverAsAnImageGoesOnWhereItWas) {
  Harness h(Room("r", small()));
  h.room.join("a", {});
  enqueue(h.room, "a", spawn(1, 4, 4));
  h.step();
  enqueue(h.room, "a", move(2, 1, 5, 5));
  h.step();
  enqueue(h.room, "a", move(3, 1, 6, 6));  // queued, not yet applied
  const RoomImage image = h.room.image(true);
  Harness next(Room::restore(image, small(), true));
  next.worlds = h.worlds;
  next.now = h.now;
  next.room.set_attached("a", true);
  const TickResult r = next.step();
  EXPECT_EQ(r.tick, 3u);
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_FALSE(r.frames[0].snapshot);
  EXPECT_EQ(next.worlds["a"].entities().at(1).position, next.room.quantize({6, 6, 0}));
  enqueue(next.room, "a", spawn(4, 0, 0));
  next.step();
  EXPECT_NE(next.room.entity(2), nullptr);  // ids go on
}

// Frames lost and acknowledgements late, entities moving in and out of views, spawned and
// despawned, clients' own avatars moving their views: once frames flow again, every client holds
// exactly what is in its view, where it is.
TEST(WorldRoom, WhateverIsLostEveryClientEndsUpWithExactlyWhatIsInItsView) {
  Limits l = small();
  l.max_entities_per_client = 1000;
  l.max_inputs_per_client_per_tick = 1000;
  l.send_budget_bytes_per_s = 100'000'000;
  Harness h(Room("r", l));
  std::mt19937 random(7);
  std::uniform_real_distribution<double> anywhere(-100, 100);
  h.room.join("m", {});
  uint64_t seq = 0;
  for (int i = 0; i < 300; ++i) enqueue(h.room, "m", spawn(++seq, anywhere(random), anywhere(random)));
  std::vector<std::string> clients;
  for (int i = 0; i < 12; ++i) {
    clients.push_back("c" + std::to_string(i));
    h.room.join(clients.back(), {anywhere(random), anywhere(random), 0});
    if (i % 3 == 0) enqueue(h.room, clients.back(), spawn(++seq, anywhere(random), anywhere(random)));
  }
  std::bernoulli_distribution lose(0.2), late(0.4);
  std::map<std::string, uint64_t> unacked;
  for (int t = 0; t < 200; ++t) {
    for (int k = 0; k < 30; ++k) {
      const uint64_t id = 1 + random() % 300;
      if (h.room.entity(id) == nullptr) continue;
      enqueue(h.room, "m", move(++seq, id, anywhere(random), anywhere(random)));
    }
    if (t % 10 == 0) {
      Input despawn;
      despawn.kind = Input::Kind::kDespawn;
      despawn.seq = ++seq;
      despawn.entity_id = 1 + random() % 300;
      if (h.room.entity(despawn.entity_id) != nullptr) enqueue(h.room, "m", despawn);
      enqueue(h.room, "m", spawn(++seq, anywhere(random), anywhere(random)));
    }
    for (const std::string& c : clients) {
      const Client* client = h.room.client(c);
      if (client->focus_entity != 0 && t % 4 == 0) {
        enqueue(h.room, c, move(++seq, client->focus_entity, anywhere(random), anywhere(random)));
      }
    }
    const TickResult r = h.room.step(h.now += 50);
    for (const Outgoing& out : r.frames) {
      if (out.client_id == "m" || lose(random)) continue;
      const auto applied = h.worlds[out.client_id].apply(out.bytes);
      if (applied == ClientWorld::Applied::kUnknownBase) {  // its snapshot was lost: it asks again
        h.room.request_snapshot(out.client_id);
        continue;
      }
      ASSERT_TRUE(applied == ClientWorld::Applied::kDelta || applied == ClientWorld::Applied::kSnapshot)
          << static_cast<int>(applied);
      if (late(random)) {
        unacked[out.client_id] = h.worlds[out.client_id].tick();
      } else {
        h.room.ack(out.client_id, h.worlds[out.client_id].tick());
      }
    }
  }
  for (int t = 0; t < 5; ++t) h.step();
  const double r2 = std::pow(l.aoi_radius_m * 1000.0 / l.position_resolution_mm, 2);
  for (const std::string& c : clients) {
    const Client* client = h.room.client(c);
    Quantized focus = client->view;
    if (client->focus_entity != 0) focus = h.room.entity(client->focus_entity)->position;
    std::map<uint64_t, Quantized> expected;
    for (const auto& [id, e] : h.room.entities()) {
      const double dx = e.position.x - focus.x, dy = e.position.y - focus.y;
      if (dx * dx + dy * dy <= r2) expected[id] = e.position;
    }
    std::map<uint64_t, Quantized> seen;
    for (const auto& [id, v] : h.worlds[c].entities()) seen[id] = v.position;
    EXPECT_EQ(seen.size(), expected.size()) << c;
    EXPECT_TRUE(seen == expected) << c;
  }
}

Input set_component(uint64_t seq, uint64_t id, std::string name, std::string value) {
  Input in;
  in.kind = Input::Kind::kSetComponent;
  in.seq = seq;
  in.entity_id = id;
  in.components.emplace_back(std::move(name), std::move(value));
  return in;
}

// A client leaves between ticks (its stream ended): the others, who acknowledged the last tick,
// see its entities removed in the next frame.
TEST(WorldRoom, WhenAClientLeavesTheOthersSeeItsEntitiesRemoved) {
  Harness h(Room("r", small()));
  h.room.join("a", {});
  h.room.join("b", {});
  enqueue(h.room, "a", spawn(1, 1, 1));
  for (int i = 0; i < 5; ++i) h.step();
  ASSERT_EQ(h.worlds["b"].entities().size(), 1u);
  h.room.leave("a");
  EXPECT_EQ(h.room.entity_count(), 0u);
  h.step();
  EXPECT_TRUE(h.worlds["b"].entities().empty()) << "b still holds the entity of the client that left";
}

// An ack of a tick no frame had (one from the future, or never sent) changes nothing: the frames
// in flight stay and the client gets no more than max_unacked_frames.
TEST(WorldRoom, AnAckOfATickNotInFlightDoesNotUndoTheUnackedLimit) {
  Limits l = small();
  l.max_unacked_frames = 4;
  Harness h(Room("r", l));
  h.room.join("evil", {});
  h.room.join("m", {});
  enqueue(h.room, "m", spawn(1, 0, 0));
  h.step();
  size_t frames = 0;
  for (int i = 1; i <= 30; ++i) {
    enqueue(h.room, "m", move(1 + i, 1, i * 0.1, 0));
    for (const Outgoing& out : h.room.step(h.now += 50).frames) {
      if (out.client_id == "evil") {
        ++frames;
      } else {
        h.worlds[out.client_id].apply(out.bytes);
        h.room.ack(out.client_id, h.worlds[out.client_id].tick());
      }
    }
    h.room.ack("evil", UINT64_MAX);
    h.room.ack("evil", h.room.tick() + 1);
  }
  EXPECT_EQ(frames, 4u);
  EXPECT_EQ(h.room.client("evil")->in_flight.size(), 4u);
}

// Snapshots asked for again and again are paid for out of the send budget: one that overdrew it
// is not followed by another until the budget has refilled.
TEST(WorldRoom, RequestedSnapshotsCountAgainstTheSendBudget) {
  Limits l = small();
  l.max_component_bytes = 1024;
  l.send_budget_bytes_per_s = 20 * 100;  // 100 bytes a tick
  Harness h(Room("r", l));
  h.room.join("a", {});
  Input big = spawn(1, 0, 0);
  for (int i = 0; i < 16; ++i) big.components.emplace_back("c" + std::to_string(i), std::string(1000, 'x'));
  enqueue(h.room, "a", big);
  h.step();
  size_t snapshots = 0;
  for (int i = 0; i < 200; ++i) {  // ten seconds
    h.room.request_snapshot("a");
    for (const Outgoing& out : h.step().frames) snapshots += out.snapshot ? 1 : 0;
  }
  // 16 kB a snapshot against 2 kB a second: about one in eight seconds, not one a second.
  EXPECT_GE(snapshots, 1u);
  EXPECT_LE(snapshots, 2u);
}

// A component removed (set to empty) frees its slot, and clients holding it drop it.
TEST(WorldRoom, ARemovedComponentFreesItsSlotAndClientsDropIt) {
  Limits l = small();
  l.max_components_per_entity = 2;
  Harness h(Room("r", l));
  h.room.join("a", {});
  h.room.join("b", {});
  enqueue(h.room, "a", spawn(1, 0, 0));
  h.step();
  enqueue(h.room, "a", set_component(2, 1, "hp", "9"));
  enqueue(h.room, "a", set_component(3, 1, "mp", "9"));
  h.step();
  ASSERT_EQ(h.worlds["b"].entities().at(1).components.size(), 2u);
  enqueue(h.room, "a", set_component(4, 1, "hp", ""));
  enqueue(h.room, "a", set_component(5, 1, "mp", ""));
  h.step();
  EXPECT_TRUE(h.worlds["b"].entities().at(1).components.empty());
  enqueue(h.room, "a", set_component(6, 1, "xp", "1"));
  enqueue(h.room, "a", set_component(7, 1, "sp", "1"));
  const TickResult r = h.step();
  EXPECT_TRUE(r.rejections.empty()) << r.rejections.front().reason;
  EXPECT_EQ(h.room.entity(1)->components.size(), 2u);
  EXPECT_EQ(h.worlds["b"].entities().at(1).components,
            (std::map<std::string, std::string>{{"sp", "1"}, {"xp", "1"}}));
}

// A client that joins again (a new stream) starts from a snapshot in the very next frame, though
// it had one less than a second before.
TEST(WorldRoom, AClientThatJoinsAgainGetsASnapshotAtOnce) {
  Harness h(Room("r", small()));
  h.room.join("a", {});
  enqueue(h.room, "a", spawn(1, 0, 0));
  for (int i = 0; i < 3; ++i) h.step();
  h.room.join("a", {});
  const TickResult r = h.room.step(h.now += 50);
  ASSERT_EQ(r.frames.size(), 1u);
  EXPECT_TRUE(r.frames[0].snapshot);
  ClientWorld fresh;
  EXPECT_EQ(fresh.apply(r.frames[0].bytes), ClientWorld::Applied::kSnapshot);
  EXPECT_EQ(fresh.entities().size(), 1u);
}

// Despawning or setting a component of another client's entity is refused naming the field.
TEST(WorldRoom, DespawnAndSetComponentOfAnothersEntityAreRefused) {
  Harness h(Room("r", small()));
  h.room.join("a", {});
  h.room.join("b", {});
  enqueue(h.room, "a", spawn(1, 0, 0));
  h.step();
  Input despawn;
  despawn.kind = Input::Kind::kDespawn;
  despawn.seq = 2;
  despawn.entity_id = 1;
  enqueue(h.room, "b", despawn);
  enqueue(h.room, "b", set_component(3, 1, "hp", "0"));
  const TickResult r = h.step();
  ASSERT_EQ(r.rejections.size(), 2u);
  EXPECT_EQ(r.rejections[0].field, "input.despawn.entity_id");
  EXPECT_EQ(r.rejections[1].field, "input.set_component.entity_id");
  ASSERT_NE(h.room.entity(1), nullptr);
  EXPECT_TRUE(h.room.entity(1)->components.empty());
}

// A room taken over from its stored snapshot: the entities of clients that did not come back are
// despawned, those of a client that did stay.
TEST(WorldRoom, EntitiesOfClientsThatDidNotComeBackAreDespawned) {
  Harness h(Room("r", small()));
  h.room.join("gone", {});
  h.room.join("back", {});
  enqueue(h.room, "gone", spawn(1, 0, 0));
  enqueue(h.room, "back", spawn(1, 1, 1));
  h.step();
  Harness taken(Room::restore(h.room.image(false), small(), false));
  taken.room.join("back", {});
  taken.step();
  EXPECT_EQ(taken.room.remove_entities_of_absent_clients(), 1u);
  taken.step();
  EXPECT_EQ(taken.room.entity_count(), 1u);
  EXPECT_EQ(taken.worlds["back"].entities().size(), 1u);
  EXPECT_EQ(taken.worlds["back"].entities().begin()->second.owner, "back");
}

// Many entities in one grid cell moving every tick: each move finds its entity in the cell, and
// the clients' views stay exact.
TEST(WorldRoom, MovesInACrowdedCellKeepTheGridExact) {
  Limits l = small();
  l.max_entities_per_client = 5000;
  l.max_inputs_per_client_per_tick = 5000;
  l.max_queued_inputs = 10000;
  l.send_budget_bytes_per_s = 100'000'000;
  Harness h(Room("r", l));
  h.room.join("m", {});
  h.room.join("v", {});
  for (int i = 0; i < 2000; ++i) enqueue(h.room, "m", spawn(i + 1, (i % 40) * 0.5, (i / 40) * 0.4));
  h.step();
  for (int t = 0; t < 5; ++t) {
    for (uint64_t id = 1 + t; id <= 2000; id += 3) enqueue(h.room, "m", move(id, id, 1 + t * 0.01, 2));
    h.step();
  }
  for (uint64_t id = 1; id <= 2000; id += 2) {
    Input d;
    d.kind = Input::Kind::kDespawn;
    d.seq = id;
    d.entity_id = id;
    enqueue(h.room, "m", d);
  }
  h.step();
  h.step();
  ASSERT_EQ(h.room.entity_count(), 1000u);
  EXPECT_EQ(h.worlds["v"].entities().size(), 1000u);
  for (const auto& [id, v] : h.worlds["v"].entities())
    EXPECT_EQ(v.position, h.room.entity(id)->position) << id;
}

}  // namespace
}  // namespace gameverse::world
