// The inventory benchmark against one host (auth, resource-manager, inventory and inventory-probe
// loaded), in rounds:
//  - grants: --clients clients grant one item and one currency amount to a player of their own
//    for --seconds (every call a new idempotency key); then the same number of raw store batches
//    of a grant's shape (inventory-probe RawBatch: the same reads and writes, no rules);
//  - accepts: each client's sender offers its receiver --accepts transfers (not timed), then the
//    receivers accept them all (timed); then as many raw batches of an accept's shape.
// Prints each side's rate and inventory/raw (the cost of the domain logic; target >= 0.7), the
// median over --rounds; then contention: --contention-clients clients trading among
// --contention-players players for --seconds (offer, then the other side accepts; a refused
// accept is cancelled), with accepted, refused (a shortfall) and ABORTED calls a second.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <iostream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/inventory/v1/inventory.grpc.pb.h"
#include "gameverse/inventoryprobe/v1/inventory_probe.grpc.pb.h"
#include "gameverse/resources/v1/resources.grpc.pb.h"

namespace {

namespace pb = gameverse::inventory::v1;
namespace res = gameverse::resources::v1;
namespace auth = gameverse::auth::v1;
namespace probe = gameverse::inventoryprobe::v1;
using Clock = std::chrono::steady_clock;

std::string token;  // the operator's
std::string run_id;

void bearer(grpc::ClientContext& context, const std::string& t) {
  context.AddMetadata("authorization", "Bearer " + t);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

[[noreturn]] void die(const std::string& what, const grpc::Status& status) {
  std::cerr << what << ": " << status.error_code() << " " << status.error_message() << "\n";
  std::exit(1);
}

struct Player {
  std::string id;
  std::string token;
};

Player sign_up(auth::Auth::Stub& stub, const std::string& name) {
  grpc::ClientContext context;
  auth::RegisterRequest request;
  request.set_username(run_id + "-" + name);
  request.set_password("bench password 0123");
  auth::Session session;
  const grpc::Status status = stub.Register(&context, request, &session);
  if (!status.ok()) die("Register", status);
  return {session.account().id(), session.access_token()};
}

void add_gem(google::protobuf::RepeatedPtrField<pb::ItemAmount>* to, int64_t n) {
  auto* a = to->Add();
  a->set_item_id("bench-gem");
  a->set_count(n);
}
void add_coin(google::protobuf::RepeatedPtrField<pb::CurrencyAmount>* to, int64_t n) {
  auto* a = to->Add();
  a->set_currency_id("bench-coin");
  a->set_amount(n);
}

// Runs `work(client, i)` on `clients` threads, each with a channel of its own, until `count`
// calls are done in all (count > 0) or `seconds` pass. Returns calls done and seconds taken.
struct Timed {
  int64_t calls = 0;
  double seconds = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(calls) / seconds : 0; }
};
Timed run(int clients, int64_t count, double seconds,
          const std::function<void(int client, int64_t i)>& work) {
  std::atomic<int64_t> done{0};
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int64_t i = 0;; ++i) {
        if (count > 0 ? i >= (count + clients - 1 - c) / clients : Clock::now() >= end) break;
        work(c, i);
        ++done;
      }
    });
  }
  for (auto& t : threads) t.join();
  return {done.load(), std::chrono::duration<double>(Clock::now() - start).count()};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Inventory benchmark"};
  std::string target, label = "store";
  int clients = 4, rounds = 3, accepts = 300, contention_clients = 100, contention_players = 10;
  double seconds = 5;
  app.add_option("--target", target, "host:port")->required();
  app.add_option("--token", token, "The [admin] token (the operator)")->required();
  app.add_option("--label", label, "Names the store in the output");
  app.add_option("--clients", clients, "Clients at once")->check(CLI::Range(1, 64));
  app.add_option("--rounds", rounds, "Rounds of grants and accepts")->check(CLI::Range(1, 20));
  app.add_option("--seconds", seconds, "Length of a timed grant or contention phase");
  app.add_option("--accepts", accepts, "Offers each client accepts a round")->check(CLI::Range(1, 900));
  app.add_option("--contention-clients", contention_clients)->check(CLI::Range(0, 1000));
  app.add_option("--contention-players", contention_players)->check(CLI::Range(2, 1000));
  CLI11_PARSE(app, argc, argv);
  run_id = "b" + std::to_string(std::random_device()());

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < std::max(clients, 8); ++c) {
    grpc::ChannelArguments args;
    args.SetInt("gv-bench-channel", c);  // a connection of its own
    channels.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  auto inventory = [&](int c) {
    return pb::Inventory::NewStub(channels[static_cast<size_t>(c) % channels.size()]);
  };
  auto probe_of = [&](int c) {
    return probe::InventoryProbe::NewStub(channels[static_cast<size_t>(c) % channels.size()]);
  };
  auto auth_stub = auth::Auth::NewStub(channels[0]);

  {  // the catalog
    auto resources = res::Resources::NewStub(channels[0]);
    grpc::ClientContext context;
    bearer(context, token);
    res::PublishRequest request;
    auto* gem = request.mutable_upsert()->add_items();
    gem->set_id("bench-gem");
    gem->set_name("gem");
    gem->set_stackable(true);
    gem->set_max_stack(1'000'000'000);
    gem->set_tradable(true);
    auto* coin = request.mutable_upsert()->add_currencies();
    coin->set_id("bench-coin");
    coin->set_name("coin");
    coin->set_max_balance(1'000'000'000'000);
    res::PublishResponse response;
    const grpc::Status status = resources->Publish(&context, request, &response);
    if (!status.ok()) die("Publish", status);
  }
  auto grant = [&](pb::Inventory::Stub& stub, const std::string& player, const std::string& key, int64_t gems,
                   int64_t coins) {
    grpc::ClientContext context;
    bearer(context, token);
    pb::GrantRequest request;
    request.set_idempotency_key(key);
    request.set_player_id(player);
    if (gems > 0) add_gem(request.mutable_items(), gems);
    if (coins > 0) add_coin(request.mutable_currencies(), coins);
    pb::ChangeResponse response;
    return stub.Grant(&context, request, &response);
  };

  std::vector<Player> senders, receivers;
  for (int c = 0; c < clients; ++c) {
    senders.push_back(sign_up(*auth_stub, "sender" + std::to_string(c)));
    receivers.push_back(sign_up(*auth_stub, "receiver" + std::to_string(c)));
    const grpc::Status s =
        grant(*inventory(c), senders.back().id, run_id + "-seed-" + std::to_string(c), 1'000'000, 0);
    if (!s.ok()) die("seed grant", s);
  }

  std::vector<double> grant_ratio, accept_ratio, grant_rates, raw_grant_rates, accept_rates, raw_accept_rates;
  std::atomic<int64_t> errors{0};
  std::string first_error;
  std::mutex mu;
  auto failed = [&](const char* what, const grpc::Status& s) {
    if (errors++ == 0) {
      std::lock_guard lock(mu);
      first_error = std::string(what) + ": " + s.error_message();
    }
  };
  for (int round = 0; round < rounds; ++round) {
    const std::string r = std::to_string(round);
    std::vector<std::unique_ptr<pb::Inventory::Stub>> inv;
    std::vector<std::unique_ptr<probe::InventoryProbe::Stub>> raw;
    for (int c = 0; c < clients; ++c) {
      inv.push_back(inventory(c));
      raw.push_back(probe_of(c));
    }
    const Timed grants = run(clients, 0, seconds, [&](int c, int64_t i) {
      const grpc::Status s =
          grant(*inv[static_cast<size_t>(c)], receivers[static_cast<size_t>(c)].id,
                run_id + "-g" + r + "-" + std::to_string(c) + "-" + std::to_string(i), 1, 1);
      if (!s.ok()) failed("Grant", s);
    });
    auto raw_batches = [&](probe::Shape shape, int64_t count, const char* tag) {
      return run(clients, count, 0, [&, shape, tag](int c, int64_t i) {
        grpc::ClientContext context;
        bearer(context, token);
        probe::RawBatchRequest request;
        request.set_shape(shape);
        request.set_key(run_id + tag + r + "-" + std::to_string(c) + "-" + std::to_string(i));
        request.set_player_a(senders[static_cast<size_t>(c)].id);
        request.set_player_b(receivers[static_cast<size_t>(c)].id);
        probe::RawBatchResponse response;
        const grpc::Status s = raw[static_cast<size_t>(c)]->RawBatch(&context, request, &response);
        if (!s.ok()) failed("RawBatch", s);
      });
    };
    const Timed raw_grants = raw_batches(probe::SHAPE_GRANT, grants.calls, "-rg");
    // Offers, not timed; then their acceptance, timed.
    std::vector<std::vector<std::string>> offers(static_cast<size_t>(clients));
    run(clients, static_cast<int64_t>(accepts) * clients, 0, [&](int c, int64_t i) {
      grpc::ClientContext context;
      bearer(context, senders[static_cast<size_t>(c)].token);
      pb::TransferRequest request;
      request.set_idempotency_key("t" + r + "-" + std::to_string(i));
      request.set_to_player_id(receivers[static_cast<size_t>(c)].id);
      add_gem(request.mutable_items(), 1);
      pb::Offer offer;
      const grpc::Status s = inv[static_cast<size_t>(c)]->Transfer(&context, request, &offer);
      if (!s.ok()) failed("Transfer", s);
      offers[static_cast<size_t>(c)].push_back(offer.offer_id());
    });
    const Timed accepted = run(clients, static_cast<int64_t>(accepts) * clients, 0, [&](int c, int64_t i) {
      grpc::ClientContext context;
      bearer(context, receivers[static_cast<size_t>(c)].token);
      pb::AcceptOfferRequest request;
      request.set_idempotency_key("a" + r + "-" + std::to_string(i));
      request.set_offer_id(offers[static_cast<size_t>(c)][static_cast<size_t>(i)]);
      pb::AcceptOfferResponse response;
      const grpc::Status s = inv[static_cast<size_t>(c)]->AcceptOffer(&context, request, &response);
      if (!s.ok()) failed("AcceptOffer", s);
    });
    const Timed raw_accepts = raw_batches(probe::SHAPE_ACCEPT, accepted.calls, "-ra");
    grant_rates.push_back(grants.rate());
    raw_grant_rates.push_back(raw_grants.rate());
    accept_rates.push_back(accepted.rate());
    raw_accept_rates.push_back(raw_accepts.rate());
    grant_ratio.push_back(grants.rate() / raw_grants.rate());
    accept_ratio.push_back(accepted.rate() / raw_accepts.rate());
    std::printf("round %d %s: grants %.0f/s raw %.0f/s (%.2f); accepts %.0f/s raw %.0f/s (%.2f)\n", round + 1,
                label.c_str(), grants.rate(), raw_grants.rate(), grant_ratio.back(), accepted.rate(),
                raw_accepts.rate(), accept_ratio.back());
  }
  std::printf("%s grants: %.0f/s, raw batches of the same shape %.0f/s, ratio %.2f (median of %d rounds)\n",
              label.c_str(), median(grant_rates), median(raw_grant_rates), median(grant_ratio), rounds);
  std::printf("%s accepts: %.0f/s, raw batches of the same shape %.0f/s, ratio %.2f (median of %d rounds)\n",
              label.c_str(), median(accept_rates), median(raw_accept_rates), median(accept_ratio), rounds);

  if (contention_clients > 0) {
    std::vector<Player> players;
    for (int p = 0; p < contention_players; ++p) {
      players.push_back(sign_up(*auth_stub, "hot" + std::to_string(p)));
      const grpc::Status s =
          grant(*inventory(0), players.back().id, run_id + "-hot-" + std::to_string(p), 10'000, 1'000'000);
      if (!s.ok()) die("seed grant", s);
    }
    std::atomic<int64_t> ok{0}, refused{0}, aborted{0}, other{0};
    const Timed trades = run(contention_clients, 0, seconds, [&](int c, int64_t i) {
      thread_local std::mt19937 random(std::random_device{}());
      auto stub = inventory(c);
      const size_t from = random() % players.size();
      const size_t to = (from + 1 + random() % (players.size() - 1)) % players.size();
      const std::string key = "x" + std::to_string(c) + "-" + std::to_string(i);
      pb::Offer offer;
      {
        grpc::ClientContext context;
        bearer(context, players[from].token);
        pb::OfferTradeRequest request;
        request.set_idempotency_key(key);
        request.set_to_player_id(players[to].id);
        add_gem(request.mutable_give_items(), 1);
        add_coin(request.mutable_want_currencies(), 10);
        const grpc::Status s = stub->OfferTrade(&context, request, &offer);
        if (!s.ok()) {
          (s.error_code() == grpc::StatusCode::ABORTED ? aborted : other)++;
          if (s.error_code() != grpc::StatusCode::ABORTED) failed("OfferTrade", s);
          return;
        }
      }
      grpc::ClientContext context;
      bearer(context, players[to].token);
      pb::AcceptOfferRequest request;
      request.set_idempotency_key(key);
      request.set_offer_id(offer.offer_id());
      pb::AcceptOfferResponse response;
      const grpc::Status s = stub->AcceptOffer(&context, request, &response);
      if (s.ok()) {
        ++ok;
        return;
      }
      if (s.error_code() == grpc::StatusCode::ABORTED) {
        ++aborted;
      } else if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        ++refused;
      } else {
        ++other;
        failed("AcceptOffer", s);
      }
      grpc::ClientContext cancel_context;  // the offer would otherwise count against the sender
      bearer(cancel_context, players[from].token);
      pb::OfferActionRequest cancel;
      cancel.set_idempotency_key(key + "-cancel");
      cancel.set_offer_id(offer.offer_id());
      pb::Offer cancelled;
      stub->CancelOffer(&cancel_context, cancel, &cancelled);
    });
    const double attempted = static_cast<double>(ok + refused + aborted + other);
    std::printf(
        "%s contention (%d clients, %d players, %.0f s): %.0f trades accepted/s; of %.0f trades: "
        "%.2f%% refused (a shortfall), %.2f%% ABORTED after retries, %lld other errors\n",
        label.c_str(), contention_clients, contention_players, trades.seconds,
        static_cast<double>(ok) / trades.seconds, attempted,
        attempted > 0 ? 100.0 * static_cast<double>(refused) / attempted : 0,
        attempted > 0 ? 100.0 * static_cast<double>(aborted) / attempted : 0,
        static_cast<long long>(other.load()));
    std::printf("%s contention trades attempted: %.0f\n", label.c_str(), attempted);
  }
  if (errors > 0) {
    std::cerr << errors << " calls failed; the first: " << first_error << "\n";
    return 1;
  }
  return 0;
}
