// gv-chat-bench: chat fan-out. One room, N Subscribe streams spread over one or more hosts (and
// several HTTP/2 connections per host), and senders posting at a fixed rate through the first
// host. Each message carries the steady-clock time it was sent; every stream notes when it
// arrived. Prints deliveries per second and the delivery latency percentiles per rate step, and
// checks that every stream got every message once, in order.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/chat/v1/chat.grpc.pb.h"
#include "percentile.hpp"

namespace pb = gameverse::chat::v1;
namespace auth = gameverse::auth::v1;
using Clock = std::chrono::steady_clock;

namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

std::shared_ptr<grpc::Channel> channel_to(const std::string& target, int index) {
  grpc::ChannelArguments args;
  args.SetInt("gv.channel_index", index);  // a connection of its own
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

struct Account {
  std::string id, token;
};

Account sign_up(auth::Auth::Stub& stub, const std::string& name) {
  grpc::ClientContext context;
  auth::RegisterRequest request;
  request.set_username(name);
  request.set_password("correct horse battery");
  auth::Session session;
  const grpc::Status status = stub.Register(&context, request, &session);
  if (!status.ok()) throw std::runtime_error("Register: " + status.error_message());
  return {session.account().id(), session.access_token()};
}

// One Subscribe stream, read with the callback API: latencies of live messages, and a check of order.
class Stream final : public grpc::ClientReadReactor<pb::SubscribeResponse> {
 public:
  Stream(pb::Chat::Stub* stub, const std::string& token, const std::string& channel) {
    context_.AddMetadata("authorization", "Bearer " + token);
    request_.set_channel_id(channel);
    stub->async()->Subscribe(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    const int64_t at = now_ns();
    for (const pb::ChatEvent& event : response_.events()) {
      if (event.type() == pb::EVENT_TYPE_CAUGHT_UP) {
        caught_up_ = true;
      } else if (event.type() == pb::EVENT_TYPE_MESSAGE) {
        const std::string& text = event.text();
        const size_t t = text.find("t=");
        std::lock_guard lock(mu_);
        if (last_seq_ != 0 && event.seq() != last_seq_ + 1) ++out_of_order_;
        last_seq_ = event.seq();
        ++received_;
        if (t != std::string::npos && recording_) {
          latencies_ms_.push_back(static_cast<double>(at - std::stoll(text.substr(t + 2))) / 1e6);
        }
      }
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard lock(mu_);
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }
  void cancel() { context_.TryCancel(); }
  void wait_done() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }
  bool caught_up() const { return caught_up_; }
  void record(bool on) {
    std::lock_guard lock(mu_);
    recording_ = on;
  }
  std::vector<double> take_latencies() {
    std::lock_guard lock(mu_);
    return std::exchange(latencies_ms_, {});
  }
  uint64_t received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  uint64_t last_seq() {
    std::lock_guard lock(mu_);
    return last_seq_;
  }
  uint64_t out_of_order() {
    std::lock_guard lock(mu_);
    return out_of_order_;
  }
  bool done() {
    std::lock_guard lock(mu_);
    return done_;
  }
  std::string status() {
    std::lock_guard lock(mu_);
    return status_.error_message();
  }

 private:
  grpc::ClientContext context_;
  pb::SubscribeRequest request_;
  pb::SubscribeResponse response_;
  std::atomic<bool> caught_up_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool recording_ = false;
  grpc::Status status_;
  uint64_t received_ = 0, last_seq_ = 0, out_of_order_ = 0;
  std::vector<double> latencies_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("gv-chat-bench: chat fan-out to one room's subscribers");
  std::vector<std::string> targets;
  int subscribers = 1000, connections = 8, senders = 4;
  double seconds = 5;
  std::vector<int> rates{50, 100, 200, 400};
  std::string label = "one host";
  app.add_option("--targets", targets,
                 "host:port of each host; streams are spread over them, sends go to the first")
      ->required();
  app.add_option("--subscribers", subscribers, "Subscribe streams in the room");
  app.add_option("--connections", connections, "HTTP/2 connections per host for the streams");
  app.add_option("--senders", senders, "sending threads");
  app.add_option("--rates", rates, "messages per second to send, one step each");
  app.add_option("--seconds", seconds, "seconds per step");
  app.add_option("--label", label, "printed with the results");
  CLI11_PARSE(app, argc, argv);

  auto first = channel_to(targets.front(), 1000);
  auto auth_stub = auth::Auth::NewStub(first);
  std::random_device random;
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", random());
  const std::string suffix = hex;
  const Account sender = sign_up(*auth_stub, "bench-sender-" + suffix);
  const Account reader = sign_up(*auth_stub, "bench-reader-" + suffix);
  auto sender_stub = pb::Chat::NewStub(first);
  std::string room;
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + sender.token);
    pb::CreateChannelRequest request;
    request.set_kind(pb::CHANNEL_KIND_ROOM);
    request.set_name("bench-" + suffix);
    pb::Channel channel;
    const grpc::Status status = sender_stub->CreateChannel(&context, request, &channel);
    if (!status.ok()) throw std::runtime_error("CreateChannel: " + status.error_message());
    room = channel.id();
  }

  std::vector<std::unique_ptr<pb::Chat::Stub>> stubs;
  for (size_t h = 0; h < targets.size(); ++h) {
    for (int c = 0; c < connections; ++c) stubs.push_back(pb::Chat::NewStub(channel_to(targets[h], c)));
  }
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < subscribers; ++i) {
    // Round robin over hosts first, so each host holds an equal share.
    const size_t host = static_cast<size_t>(i) % targets.size();
    const size_t connection = (static_cast<size_t>(i) / targets.size()) % static_cast<size_t>(connections);
    streams.push_back(std::make_unique<Stream>(
        stubs[host * static_cast<size_t>(connections) + connection].get(), reader.token, room));
  }
  const auto give_up = Clock::now() + std::chrono::seconds(60);
  for (auto& s : streams) {
    while (!s->caught_up()) {
      if (s->done() || Clock::now() > give_up) {
        std::fprintf(stderr, "a stream did not open: %s\n", s->status().c_str());
        for (auto& other : streams) other->cancel();  // reactors must end before they are freed
        for (auto& other : streams) other->wait_done();
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  std::printf("%s: %d streams open on %zu host(s) in room %s\n", label.c_str(), subscribers, targets.size(),
              room.c_str());

  std::atomic<uint64_t> sent{0}, failed{0};
  for (int rate : rates) {
    for (auto& s : streams) s->record(true);
    std::vector<uint64_t> before;
    for (auto& s : streams) before.push_back(s->received());
    const auto start = Clock::now();
    const auto interval = std::chrono::nanoseconds(static_cast<int64_t>(1e9 / rate * senders));
    std::vector<std::thread> threads;
    std::mutex send_mu;
    std::vector<double> send_ms;  // each Send call, to the stored and announced event
    const uint64_t sent_before = sent;
    for (int t = 0; t < senders; ++t) {
      threads.emplace_back([&, t] {
        auto stub = pb::Chat::NewStub(channel_to(targets.front(), 2000 + t));
        auto next = start + interval * t / senders;
        while (Clock::now() - start < std::chrono::duration<double>(seconds)) {
          std::this_thread::sleep_until(next);
          next += interval;
          grpc::ClientContext context;
          context.AddMetadata("authorization", "Bearer " + sender.token);
          pb::SendRequest request;
          request.set_channel_id(room);
          request.set_text("t=" + std::to_string(now_ns()));
          pb::ChatEvent event;
          const auto called = Clock::now();
          if (stub->Send(&context, request, &event).ok()) {
            ++sent;
            std::lock_guard lock(send_mu);
            send_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - called).count());
          } else {
            ++failed;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    const uint64_t sent_here = sent - sent_before;
    // Let the last messages arrive (bounded), then count.
    const auto drain_until = Clock::now() + std::chrono::seconds(10);
    const auto expected = [&](size_t i) { return before[i] + sent_here; };
    for (size_t i = 0; i < streams.size(); ++i) {
      while (streams[i]->received() < expected(i) && Clock::now() < drain_until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    uint64_t deliveries = 0, missing = 0;
    std::vector<double> latencies;
    for (size_t i = 0; i < streams.size(); ++i) {
      const uint64_t got = streams[i]->received() - before[i];
      deliveries += got;
      if (got < sent_here) missing += sent_here - got;
      std::vector<double> l = streams[i]->take_latencies();
      latencies.insert(latencies.end(), l.begin(), l.end());
    }
    // Over the whole step, until the last message reached every stream: what the fan-out sustained.
    std::printf(
        "%s rate=%d msgs_sent=%llu deliveries=%llu deliveries_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f "
        "send_p50_ms=%.2f send_p99_ms=%.2f missing=%llu send_failures=%llu (sending %.1fs, all delivered "
        "after %.1fs)\n",
        label.c_str(), rate, static_cast<unsigned long long>(sent_here),
        static_cast<unsigned long long>(deliveries), static_cast<double>(deliveries) / elapsed,
        gameverse::bench::percentile(latencies, 0.5), gameverse::bench::percentile(latencies, 0.99),
        gameverse::bench::percentile(latencies, 1.0), gameverse::bench::percentile(send_ms, 0.5),
        gameverse::bench::percentile(send_ms, 0.99), static_cast<unsigned long long>(missing),
        static_cast<unsigned long long>(failed.load()), seconds, elapsed);
    std::fflush(stdout);
  }
  uint64_t out_of_order = 0, ended = 0;
  for (auto& s : streams) {
    out_of_order += s->out_of_order();
    ended += s->done();
  }
  std::printf("%s: out_of_order=%llu streams_ended_early=%llu\n", label.c_str(),
              static_cast<unsigned long long>(out_of_order), static_cast<unsigned long long>(ended));
  for (auto& s : streams) s->cancel();
  for (auto& s : streams) s->wait_done();
  return out_of_order == 0 && ended == 0 ? 0 : 1;
}
