// gv-world-bench: one room of --entities entities, a tenth of them moving every tick (a random walk
// sent by one driver stream), watched by --clients Play streams spread over the same area; each
// client acknowledges every frame. Reports the bytes each client received a second, the moving
// entities a client had in view per frame, and the host's CPU per tick (from /proc/<pid>/stat).
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "gameverse/world/v1/world.grpc.pb.h"

namespace pb = gameverse::world::v1;
using Clock = std::chrono::steady_clock;

namespace {

// utime + stime of a process, in seconds.
double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  std::istringstream fields(line.substr(close + 2));
  std::string value;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> value; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(value);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Stream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<pb::ClientMessage, pb::ServerMessage>> rw;
  std::mutex write_mu;
  bool write(const pb::ClientMessage& m) {
    std::lock_guard lock(write_mu);
    return rw->Write(m);
  }
};

std::unique_ptr<Stream> open(pb::World::Stub& stub, const std::string& room, float x, float y) {
  auto s = std::make_unique<Stream>();
  s->rw = stub.Play(&s->context);
  pb::ClientMessage join;
  join.mutable_join()->set_room_id(room);
  join.mutable_join()->mutable_view()->set_x(x);
  join.mutable_join()->mutable_view()->set_y(y);
  s->write(join);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("world-state load: one room, many clients");
  std::string target, room = "bench";
  int clients = 200, entities = 2000, hz = 20, seconds = 10, warmup = 3, pid = 0;
  double side_m = 120, step_m = 0.25;
  app.add_option("--target", target)->required();
  app.add_option("--room", room);
  app.add_option("--clients", clients);
  app.add_option("--entities", entities);
  app.add_option("--hz", hz, "the room's tick_hz (the driver moves at this rate)");
  app.add_option("--seconds", seconds);
  app.add_option("--warmup", warmup);
  app.add_option("--side-m", side_m, "entities and clients are spread over a square of this side");
  app.add_option("--host-pid", pid, "the host process, for its CPU time");
  CLI11_PARSE(app, argc, argv);

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  std::mt19937 random(42);
  std::uniform_real_distribution<float> anywhere(static_cast<float>(-side_m / 2),
                                                 static_cast<float>(side_m / 2));

  // The driver spawns every entity (ids 1..N in a new room) and moves every tenth.
  auto driver_channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  auto driver_stub = pb::World::NewStub(driver_channel);
  auto driver = open(*driver_stub, room, 0, 0);
  std::atomic<bool> stop = false;
  std::atomic<bool> joined = false;
  std::atomic<uint64_t> rejected = 0;
  std::thread driver_reader([&] {
    pb::ServerMessage m;
    while (driver->rw->Read(&m)) {
      if (m.has_joined()) joined = true;
      pb::ClientMessage ack;
      if (m.has_delta()) ack.mutable_ack()->set_tick(m.delta().tick());
      if (m.has_snapshot()) ack.mutable_ack()->set_tick(m.snapshot().tick());
      if (m.has_input_rejected() && rejected++ < 5) {
        std::cerr << "rejected: " << m.input_rejected().field() << " " << m.input_rejected().reason() << "\n";
      }
      if (ack.has_ack()) driver->write(ack);
    }
  });
  // Inputs count from Joined on.
  while (!joined) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::vector<std::pair<float, float>> at(static_cast<size_t>(entities) + 1);
  for (int i = 1; i <= entities; ++i) {
    at[static_cast<size_t>(i)] = {anywhere(random), anywhere(random)};
    pb::ClientMessage m;
    m.mutable_input()->set_seq(static_cast<uint64_t>(i));
    pb::Spawn* spawn = m.mutable_input()->mutable_spawn();
    spawn->set_type(i % 10 == 0 ? "walker" : "prop");
    spawn->mutable_position()->set_x(at[static_cast<size_t>(i)].first);
    spawn->mutable_position()->set_y(at[static_cast<size_t>(i)].second);
    driver->write(m);
    if (i % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1000 / hz + 20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  struct Counters {
    std::atomic<uint64_t> bytes = 0, frames = 0, moves = 0, snapshots = 0;
  };
  Counters counters;
  std::atomic<bool> measuring = false;
  const int channels = 8;
  std::vector<std::shared_ptr<grpc::Channel>> pool;
  std::vector<std::unique_ptr<pb::World::Stub>> stubs;
  for (int i = 0; i < channels; ++i) {
    args.SetInt("gameverse.bench.channel", i);  // distinct channels, not one shared connection
    pool.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
    stubs.push_back(pb::World::NewStub(pool.back()));
  }
  std::vector<std::unique_ptr<Stream>> streams;
  std::vector<std::thread> readers;
  for (int c = 0; c < clients; ++c) {
    streams.push_back(
        open(*stubs[static_cast<size_t>(c % channels)], room, anywhere(random), anywhere(random)));
    Stream* s = streams.back().get();
    readers.emplace_back([s, &counters, &measuring] {
      pb::ServerMessage m;
      while (s->rw->Read(&m)) {
        pb::ClientMessage ack;
        if (m.has_delta()) {
          ack.mutable_ack()->set_tick(m.delta().tick());
          if (measuring) {
            counters.moves += static_cast<uint64_t>(m.delta().moves_size() / 4 + m.delta().updated_size());
          }
        } else if (m.has_snapshot()) {
          ack.mutable_ack()->set_tick(m.snapshot().tick());
          if (measuring) ++counters.snapshots;
        }
        if (measuring) {
          counters.bytes += m.ByteSizeLong();
          ++counters.frames;
        }
        if (ack.has_ack()) s->write(ack);
      }
    });
  }

  // Moves: every tenth entity takes a step each tick.
  std::thread mover([&] {
    const auto period = std::chrono::nanoseconds(1'000'000'000 / hz);
    auto next = Clock::now();
    uint64_t seq = 1'000'000;
    std::uniform_real_distribution<float> step(static_cast<float>(-step_m), static_cast<float>(step_m));
    while (!stop) {
      for (int i = 10; i <= entities; i += 10) {
        auto& [x, y] = at[static_cast<size_t>(i)];
        x = std::clamp(x + step(random), static_cast<float>(-side_m / 2), static_cast<float>(side_m / 2));
        y = std::clamp(y + step(random), static_cast<float>(-side_m / 2), static_cast<float>(side_m / 2));
        pb::ClientMessage m;
        m.mutable_input()->set_seq(++seq);
        m.mutable_input()->mutable_move()->set_entity_id(static_cast<uint64_t>(i));
        m.mutable_input()->mutable_move()->mutable_position()->set_x(x);
        m.mutable_input()->mutable_move()->mutable_position()->set_y(y);
        driver->write(m);
      }
      next += period;
      std::this_thread::sleep_until(next);
    }
  });

  std::this_thread::sleep_for(std::chrono::seconds(warmup));
  const double cpu0 = pid > 0 ? cpu_seconds(pid) : 0;
  const auto t0 = Clock::now();
  measuring = true;
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  measuring = false;
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  const double cpu = pid > 0 ? cpu_seconds(pid) - cpu0 : 0;
  stop = true;
  mover.join();

  const double ticks = elapsed * hz;
  const double frames = static_cast<double>(counters.frames.load());
  std::printf(
      "world hz=%d clients=%d entities=%d moving=%d seconds=%.1f host_cpu_core_share=%.3f "
      "cpu_ms_per_tick=%.2f "
      "bytes_per_client_per_s=%.0f frames_per_client_per_s=%.1f moving_in_view_per_frame=%.1f "
      "bytes_per_frame=%.0f snapshots=%llu inputs_rejected=%llu\n",
      hz, clients, entities, entities / 10, elapsed, cpu / elapsed, cpu * 1000 / ticks,
      static_cast<double>(counters.bytes.load()) / clients / elapsed, frames / clients / elapsed,
      frames > 0 ? static_cast<double>(counters.moves.load()) / frames : 0,
      frames > 0 ? static_cast<double>(counters.bytes.load()) / frames : 0,
      static_cast<unsigned long long>(counters.snapshots.load()),
      static_cast<unsigned long long>(rejected.load()));
  if (frames == 0) {
    std::fprintf(stderr, "no frame reached the clients: is the world-state plugin serving?\n");
    std::_Exit(1);
  }
  for (auto& s : streams) s->context.TryCancel();
  for (auto& t : readers) t.join();
  driver->context.TryCancel();
  driver_reader.join();
  return 0;
}
