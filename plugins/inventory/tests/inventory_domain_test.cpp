// The inventory's rules and use cases without a host: an in-memory repository with the store's
// conflict rules and a fixed catalog.
#include <gtest/gtest.h>

#include <atomic>
#include <limits>
#include <thread>

#include "domain/inventory_service.hpp"
#include "in_memory.hpp"

namespace gameverse::inventory {
namespace {

using testing::FixedCatalog;
using testing::InMemoryRepository;
using Kind = InventoryError::Kind;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

// The response a test reads back: the holdings after, as text.
std::string render(const Outcome& o) {
  std::string out = o.player_id + ":";
  for (const auto& [id, n] : o.holdings.items) out += id + "=" + std::to_string(n) + ",";
  for (const auto& [id, n] : o.holdings.currencies) out += id + "=" + std::to_string(n) + ",";
  if (o.offer) out += "offer=" + o.offer->id;
  return out;
}

class InventoryDomain : public ::testing::Test {
 protected:
  InventoryDomain()
      : service_(
            repo_, catalog_, Limits{}, [this] { return now_; },
            [this] { return "offer-" + std::to_string(++offers_); }) {
    Definitions& d = catalog_.all;
    d.version = 3;
    d.items["sword"] = {"sword", false, 1, true, false, false};
    d.items["potion"] = {"potion", true, 99, true, true, false};
    d.items["medal"] = {"medal", true, 10, false, false, false};  // not tradable
    d.items["relic"] = {"relic", true, 5, true, false, true};     // retired
    d.currencies["gold"] = {"gold", 1'000'000, false};
    d.currencies["big"] = {"big", kInt64Max, false};
    d.bundles["starter"] = {"starter", {{"potion", 3}}, {{"gold", 100}}, false};
  }

  ChangeRequest req(const std::string& method, const std::string& key, const std::string& bytes = "r") {
    return {method, key, method + bytes, nullptr};
  }
  std::string grant(const std::string& player, Amounts items, Amounts currencies, const std::string& key,
                    std::vector<std::string> bundles = {}) {
    std::string bytes = player;  // stands for the serialized request
    for (const Amount& a : items) bytes += "|" + a.id + "=" + std::to_string(a.count);
    for (const Amount& a : currencies) bytes += "|" + a.id + "=" + std::to_string(a.count);
    return service_.grant(admin_, req("Grant", key, bytes), render, player, items, currencies, bundles, "");
  }
  Holdings held(const std::string& player) { return repo_.load(player).holdings; }
  static Caller player(const std::string& id) { return {id, {"player"}, "", false}; }

  template <class F>
  Kind refused(F&& f) {
    try {
      f();
    } catch (const InventoryError& e) {
      last_error_ = e.what();
      return e.kind();
    }
    ADD_FAILURE() << "not refused";
    return Kind::kDataLoss;
  }

  InMemoryRepository repo_;
  FixedCatalog catalog_;
  int64_t now_ = 1'000'000;
  std::atomic<int> offers_{0};  // offer ids are made on several threads at once
  InventoryService service_;
  Caller admin_{"root", {"player", "admin"}, "", false};
  std::string last_error_;
};

TEST_F(InventoryDomain, GrantAddsItemsCurrenciesAndBundlesWithOneLedgerEntry) {
  grant("alice", {{"sword", 1}}, {{"gold", 50}}, "k1", {"starter"});
  const Holdings h = held("alice");
  EXPECT_EQ(h.items.at("sword"), 1);
  EXPECT_EQ(h.items.at("potion"), 3);
  EXPECT_EQ(h.currencies.at("gold"), 150);
  EXPECT_EQ(h.sequence, 1u);
  EXPECT_EQ(repo_.ledger_size(), 1u);
  EXPECT_TRUE(repo_.anyone_holds("sword"));
}

TEST_F(InventoryDomain, AReplayReturnsTheFirstAnswerAndChangesNothing) {
  const std::string first = grant("alice", {{"potion", 2}}, {}, "same");
  const std::string again = grant("alice", {{"potion", 2}}, {}, "same");
  EXPECT_EQ(first, again);
  EXPECT_EQ(held("alice").items.at("potion"), 2);
  EXPECT_EQ(repo_.ledger_size(), 1u);
  // The same key for another request is refused, saying so.
  EXPECT_EQ(refused([&] { grant("alice", {{"potion", 5}}, {}, "same"); }), Kind::kAlreadyExists);
  EXPECT_NE(last_error_.find("idempotency_key 'same' was already used for a different request"),
            std::string::npos)
      << last_error_;
  EXPECT_EQ(held("alice").items.at("potion"), 2);
}

TEST_F(InventoryDomain, KeysAreScopedByCaller) {
  grant("alice", {{"potion", 1}}, {}, "k");
  Caller other_admin{"root2", {"admin"}, "", false};
  service_.grant(other_admin, req("Grant", "k", "alice"), render, "alice", {{"potion", 1}}, {}, {}, "");
  EXPECT_EQ(held("alice").items.at("potion"), 2);
}

TEST_F(InventoryDomain, BadInputIsRefusedNamingTheFieldAndChangesNothing) {
  struct Case {
    Amounts items, currencies;
    std::string key;
    const char* names;
  };
  const std::vector<Case> cases = {
      {{{"nope", 1}}, {}, "a", "items[0].item_id 'nope' is not in the catalog"},
      {{{"potion", 0}}, {}, "b", "items[0].count is 0"},
      {{{"potion", -1}}, {}, "c", "items[0].count is -1"},
      {{{"potion", kInt64Min}}, {}, "d", "items[0].count is -9223372036854775808"},
      {{{"potion", kInt64Max}}, {}, "e", "items[0].count is 9223372036854775807; the most is"},
      {{}, {{"gold", -5}}, "f", "currencies[0].amount is -5"},
      {{{"potion", 1}, {"potion", 1}}, {}, "g", "appears twice"},
      {{{"bad/id", 1}}, {}, "h", "items[0].item_id 'bad/id' may hold only"},
      {{{"potion", 1}}, {}, "", "idempotency_key is required"},
      {{{"relic", 1}}, {}, "i", "items[0].item_id 'relic' is retired"},
      {{}, {{"gold", 1'000'001}}, "j", "max_balance is 1000000"},
      {{{"potion", 100}}, {}, "k", "max_stack is 99"},
  };
  for (const Case& c : cases) {
    refused([&] { grant("alice", c.items, c.currencies, c.key); });
    EXPECT_NE(last_error_.find(c.names), std::string::npos) << last_error_;
  }
  Amounts many;
  for (int i = 0; i < 65; ++i) many.push_back({"i" + std::to_string(i), 1});
  EXPECT_EQ(refused([&] { grant("alice", many, {}, "l"); }), Kind::kInvalidArgument);
  EXPECT_NE(last_error_.find("65 item, currency and bundle lines; the most is 64"), std::string::npos);
  EXPECT_EQ(repo_.commits, 0);
  EXPECT_TRUE(held("alice").items.empty());
}

TEST_F(InventoryDomain, BalancesStayWithinInt64) {
  grant("alice", {}, {{"big", kMaxQuantity}}, "a");
  grant("alice", {}, {{"big", kMaxQuantity}}, "b");
  grant("alice", {}, {{"big", kMaxQuantity}}, "c");
  grant("alice", {}, {{"big", kMaxQuantity}}, "d");
  grant("alice", {}, {{"big", kMaxQuantity}}, "e");
  grant("alice", {}, {{"big", kMaxQuantity}}, "f");
  grant("alice", {}, {{"big", kMaxQuantity}}, "g");
  grant("alice", {}, {{"big", kMaxQuantity}}, "h");
  grant("alice", {}, {{"big", kMaxQuantity}}, "i");
  EXPECT_EQ(refused([&] { grant("alice", {}, {{"big", kMaxQuantity}}, "j"); }), Kind::kInvalidArgument);
  EXPECT_NE(last_error_.find("overflow"), std::string::npos) << last_error_;
  EXPECT_EQ(held("alice").currencies.at("big"), 9 * kMaxQuantity);
}

TEST_F(InventoryDomain, OnlyAdminsAndTrustedPluginsGrant) {
  EXPECT_EQ(
      refused([&] {
        service_.grant(player("alice"), req("Grant", "k"), render, "alice", {{"potion", 1}}, {}, {}, "");
      }),
      Kind::kPermissionDenied);
  Caller untrusted{"", {}, "shop", false};
  EXPECT_EQ(refused([&] {
              service_.grant(untrusted, req("Grant", "k"), render, "alice", {{"potion", 1}}, {}, {}, "");
            }),
            Kind::kPermissionDenied);
  EXPECT_NE(last_error_.find("plugin 'shop' is not in the inventory's trusted_plugins"), std::string::npos);
  Caller trusted{"", {}, "shop", true};
  service_.grant(trusted, req("Grant", "k"), render, "alice", {{"potion", 1}}, {}, {}, "");
  EXPECT_EQ(held("alice").items.at("potion"), 1);
}

TEST_F(InventoryDomain, ConsumeTakesOnlyConsumableItemsThePlayerHolds) {
  grant("alice", {{"potion", 2}, {"sword", 1}}, {}, "g");
  service_.consume(player("alice"), req("Consume", "c1"), render, {{"potion", 2}}, "");
  EXPECT_EQ(held("alice").items.count("potion"), 0u);
  EXPECT_FALSE(repo_.anyone_holds("potion"));
  EXPECT_EQ(refused([&] {
              service_.consume(player("alice"), req("Consume", "c2"), render, {{"potion", 1}}, "");
            }),
            Kind::kFailedPrecondition);
  EXPECT_EQ(refused([&] {
              service_.consume(player("alice"), req("Consume", "c3"), render, {{"sword", 1}}, "");
            }),
            Kind::kFailedPrecondition);
  EXPECT_NE(last_error_.find("not consumable"), std::string::npos);
}

TEST_F(InventoryDomain, ATradeSwapsAtomicallyWhenAccepted) {
  grant("alice", {{"sword", 1}}, {{"gold", 10}}, "a");
  grant("bob", {{"potion", 5}}, {{"gold", 500}}, "b");
  service_.offer(player("alice"), req("OfferTrade", "o"), render, "bob", {{"sword", 1}}, {}, {{"potion", 5}},
                 {{"gold", 200}}, 0, false);
  EXPECT_EQ(refused([&] { service_.accept(player("carol"), req("AcceptOffer", "x"), render, "offer-1"); }),
            Kind::kPermissionDenied);
  service_.accept(player("bob"), req("AcceptOffer", "acc"), render, "offer-1");
  EXPECT_EQ(held("alice").items.at("potion"), 5);
  EXPECT_EQ(held("alice").currencies.at("gold"), 210);
  EXPECT_EQ(held("bob").items.at("sword"), 1);
  EXPECT_EQ(held("bob").currencies.at("gold"), 300);
  EXPECT_EQ(refused([&] { service_.accept(player("bob"), req("AcceptOffer", "acc2"), render, "offer-1"); }),
            Kind::kFailedPrecondition);
  VerifyReport report = service_.verify(admin_, "", "", 0);
  EXPECT_EQ(report.players_checked, 2u);
  EXPECT_TRUE(report.mismatches.empty());
}

TEST_F(InventoryDomain, AcceptReChecksBothSidesAtThatMoment) {
  grant("alice", {{"potion", 3}}, {}, "a");
  grant("bob", {}, {{"gold", 100}}, "b");
  service_.offer(player("alice"), req("OfferTrade", "o"), render, "bob", {{"potion", 3}}, {}, {},
                 {{"gold", 100}}, 0, false);
  service_.consume(player("alice"), req("Consume", "c"), render, {{"potion", 1}}, "");
  EXPECT_EQ(refused([&] { service_.accept(player("bob"), req("AcceptOffer", "acc"), render, "offer-1"); }),
            Kind::kFailedPrecondition);
  EXPECT_NE(last_error_.find("the sender can no longer fulfil offer 'offer-1'"), std::string::npos)
      << last_error_;
  EXPECT_EQ(held("bob").currencies.at("gold"), 100);
  EXPECT_EQ(held("alice").items.at("potion"), 2);
}

TEST_F(InventoryDomain, NonTradableItemsCannotBeOfferedAndOffersExpire) {
  grant("alice", {{"medal", 1}, {"potion", 1}}, {}, "a");
  EXPECT_EQ(refused([&] {
              service_.offer(player("alice"), req("Transfer", "t"), render, "bob", {{"medal", 1}}, {}, {}, {},
                             0, true);
            }),
            Kind::kFailedPrecondition);
  EXPECT_NE(last_error_.find("not tradable"), std::string::npos);
  service_.offer(player("alice"), req("Transfer", "t2"), render, "bob", {{"potion", 1}}, {}, {}, {}, 10,
                 true);
  now_ += 11'000;
  EXPECT_EQ(refused([&] { service_.accept(player("bob"), req("AcceptOffer", "a"), render, "offer-1"); }),
            Kind::kFailedPrecondition);
  EXPECT_NE(last_error_.find("expired"), std::string::npos);
  EXPECT_EQ(held("bob").items.size(), 0u);
}

TEST_F(InventoryDomain, DeclineAndCancelBelongToEachSide) {
  grant("alice", {{"potion", 2}}, {}, "a");
  service_.offer(player("alice"), req("Transfer", "t1"), render, "bob", {{"potion", 1}}, {}, {}, {}, 0, true);
  EXPECT_EQ(refused([&] {
              service_.close(player("alice"), req("DeclineOffer", "d"), render, "offer-1",
                             OfferState::kDeclined);
            }),
            Kind::kPermissionDenied);
  service_.close(player("bob"), req("DeclineOffer", "d"), render, "offer-1", OfferState::kDeclined);
  EXPECT_EQ(
      service_
          .offer(player("alice"), req("Transfer", "t2"), render, "bob", {{"potion", 1}}, {}, {}, {}, 0, true)
          .empty(),
      false);
  service_.close(player("alice"), req("CancelOffer", "c"), render, "offer-2", OfferState::kCancelled);
  EXPECT_TRUE(service_.offers(player("bob"), std::nullopt, "", 0).items.empty());
}

TEST_F(InventoryDomain, ConflictsAreRetriedThenAborted) {
  repo_.fail_next_commits = 3;
  grant("alice", {{"potion", 1}}, {}, "a");
  EXPECT_EQ(held("alice").items.at("potion"), 1);
  repo_.fail_next_commits = 100;
  EXPECT_EQ(refused([&] { grant("alice", {{"potion", 1}}, {}, "b"); }), Kind::kAborted);
  EXPECT_EQ(held("alice").items.at("potion"), 1);
}

TEST_F(InventoryDomain, ConcurrentTradesConserveTotals) {
  const int players = 6;
  for (int p = 0; p < players; ++p) {
    grant("p" + std::to_string(p), {{"potion", 50}}, {{"gold", 1000}}, "seed" + std::to_string(p));
  }
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        const std::string from = "p" + std::to_string((t + i) % players);
        const std::string to = "p" + std::to_string((t + i + 1) % players);
        const std::string key = std::to_string(t) + "-" + std::to_string(i);
        try {
          std::string bytes = service_.offer(player(from), req("OfferTrade", key, key), render, to,
                                             {{"potion", 3}}, {}, {}, {{"gold", 7}}, 0, false);
          const std::string id = bytes.substr(bytes.find("offer=") + 6);
          service_.accept(player(to), req("AcceptOffer", key, key), render, id);
          ++accepted;
        } catch (const InventoryError& e) {
          EXPECT_TRUE(e.kind() == Kind::kFailedPrecondition || e.kind() == Kind::kAborted) << e.what();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  int64_t potions = 0, gold = 0;
  for (int p = 0; p < players; ++p) {
    const Holdings h = held("p" + std::to_string(p));
    potions += h.items.count("potion") ? h.items.at("potion") : 0;
    gold += h.currencies.count("gold") ? h.currencies.at("gold") : 0;
  }
  EXPECT_GT(accepted.load(), 0);
  EXPECT_EQ(potions, 50 * players);
  EXPECT_EQ(gold, 1000 * players);
  EXPECT_TRUE(service_.verify(admin_, "", "", 0).mismatches.empty());
}

TEST_F(InventoryDomain, VerifyFindsABalanceTheLedgerDoesNotExplain) {
  grant("alice", {}, {{"gold", 10}}, "a");
  repo_.set_balance("alice", "gold", 11);
  VerifyReport report = service_.verify(admin_, "alice", "", 0);
  ASSERT_EQ(report.mismatches.size(), 1u);
  EXPECT_EQ(report.mismatches[0].kind, "currency");
  EXPECT_EQ(report.mismatches[0].held, 11);
  EXPECT_EQ(report.mismatches[0].derived, 10);
}

TEST_F(InventoryDomain, RemovedItemsAreMigratedOnReadAndUndefinedOnesFrozen) {
  grant("alice", {{"potion", 4}, {"sword", 1}}, {}, "a");
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.items.erase("potion");
    catalog_.all.items.erase("sword");
    catalog_.all.migrations["potion"] = {"potion", std::nullopt, Amount{"gold", 5}, false, 4};
    catalog_.all.version = 4;
  }
  Outcome o = service_.get(player("alice"), "alice");
  EXPECT_EQ(o.holdings.items.count("potion"), 0u);
  EXPECT_EQ(o.holdings.currencies.at("gold"), 20);
  ASSERT_EQ(o.frozen.size(), 1u);
  EXPECT_NE(o.frozen.at("sword").find("without a migration"), std::string::npos) << o.frozen.at("sword");
  EXPECT_EQ(o.holdings.items.at("sword"), 1);
  EXPECT_TRUE(service_.verify(admin_, "alice", "", 0).mismatches.empty());
  EXPECT_EQ(refused([&] { service_.get(player("bob"), "alice"); }), Kind::kPermissionDenied);
  EXPECT_EQ(service_.get(Caller{"mod", {"moderator"}, "", false}, "alice").holdings.items.at("sword"), 1);
}

TEST_F(InventoryDomain, AMigrationWithoutATargetDropsNothing) {
  grant("alice", {{"potion", 4}}, {}, "a");
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.items.erase("potion");
    catalog_.all.migrations["potion"] = {"potion", std::nullopt, std::nullopt, false, 4};
  }
  const Outcome o = service_.get(player("alice"), "alice");
  EXPECT_EQ(o.holdings.items.at("potion"), 4);
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.migrations["potion"].discard = true;
  }
  EXPECT_EQ(service_.get(player("alice"), "alice").holdings.items.count("potion"), 0u);
  const std::vector<LedgerEntry> ledger = repo_.ledger("alice", "", 100).items;
  ASSERT_EQ(ledger.size(), 2u);
  EXPECT_EQ(ledger[1].reason, "catalog migration");
  EXPECT_EQ(ledger[1].item_deltas, (Amounts{{"potion", -4}}));
}

TEST_F(InventoryDomain, GrantsFailUnavailableWithoutTheCatalog) {
  catalog_.unavailable = true;
  EXPECT_EQ(refused([&] { grant("alice", {{"potion", 1}}, {}, "a"); }), Kind::kUnavailable);
  EXPECT_EQ(repo_.commits, 0);
}

TEST_F(InventoryDomain, AReplayGetsTheFirstAnswerBeforeAnyLimitOrRuleThatChangedSince) {
  grant("alice", {{"potion", 10}}, {}, "seed");
  int admitted = 0;
  ChangeRequest request = req("Transfer", "once");
  request.admit = [&] { ++admitted; };
  const std::string first =
      service_.offer(player("alice"), request, render, "bob", {{"potion", 2}}, {}, {}, {}, 7200, true);
  EXPECT_EQ(admitted, 1);
  // The operator lowers the limits; the rate limit would refuse the caller now.
  Limits lower;
  lower.max_lines = 0;
  lower.max_offer_ttl_s = 60;
  lower.default_offer_ttl_s = 60;
  InventoryService reconfigured(
      repo_, catalog_, lower, [this] { return now_; }, [] { return std::string("x"); });
  request.admit = [&] {
    ++admitted;
    throw InventoryError(Kind::kResourceExhausted, "too many offers");
  };
  EXPECT_EQ(
      reconfigured.offer(player("alice"), request, render, "bob", {{"potion", 2}}, {}, {}, {}, 7200, true),
      first);
  EXPECT_EQ(admitted, 1) << "a replay is never counted against a rate limit";
  // A new key is counted (and here refused).
  ChangeRequest fresh = req("Transfer", "twice");
  fresh.admit = request.admit;
  EXPECT_EQ(
      refused([&] {
        reconfigured.offer(player("alice"), fresh, render, "bob", {{"potion", 2}}, {}, {}, {}, 7200, true);
      }),
      Kind::kResourceExhausted);
}

TEST_F(InventoryDomain, GrantKeysAreScopedPerPlayerSoAPluginGrantingForManyPlayersKeepsThemApart) {
  const Caller shop{"", {}, "shop", true};
  service_.grant(shop, req("Grant", "daily-reward", "alice"), render, "alice", {{"potion", 1}}, {}, {}, "");
  service_.grant(shop, req("Grant", "daily-reward", "bob"), render, "bob", {{"potion", 1}}, {}, {}, "");
  EXPECT_EQ(held("alice").items.at("potion"), 1);
  EXPECT_EQ(held("bob").items.at("potion"), 1);
  // A replay for one player still gets its first answer.
  service_.grant(shop, req("Grant", "daily-reward", "bob"), render, "bob", {{"potion", 1}}, {}, {}, "");
  EXPECT_EQ(held("bob").items.at("potion"), 1);
  EXPECT_EQ(repo_.ledger_size(), 2u);
}

TEST_F(InventoryDomain, AMigrationThatWouldPassALimitLeavesTheHoldingFrozenWithTheReason) {
  size_t held_back = 0;
  service_.on_migration_held_back([&](size_t n) { held_back += n; });
  grant("alice", {{"potion", 99}, {"medal", 2}}, {{"gold", 999'000}}, "a");
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.items.erase("potion");
    catalog_.all.items.erase("medal");
    // 99 potions -> 99'000 gold on top of 999'000: over gold's max_balance of 1'000'000.
    catalog_.all.migrations["potion"] = {"potion", std::nullopt, Amount{"gold", 1000}, false, 4};
    // 2 medals -> 2 swords: over sword's max_stack of 1.
    catalog_.all.migrations["medal"] = {"medal", Amount{"sword", 1}, std::nullopt, false, 4};
    catalog_.all.version = 4;
  }
  const Outcome o = service_.get(player("alice"), "alice");
  EXPECT_EQ(o.holdings.items.at("potion"), 99);
  EXPECT_EQ(o.holdings.items.at("medal"), 2);
  EXPECT_EQ(o.holdings.items.count("sword"), 0u);
  EXPECT_EQ(o.holdings.currencies.at("gold"), 999'000);
  ASSERT_EQ(o.frozen.size(), 2u);
  EXPECT_NE(o.frozen.at("potion").find("over its max_balance of 1000000"), std::string::npos)
      << o.frozen.at("potion");
  EXPECT_NE(o.frozen.at("medal").find("over its max_stack of 1"), std::string::npos) << o.frozen.at("medal");
  EXPECT_EQ(held_back, 2u);
  EXPECT_EQ(repo_.ledger_size(), 1u);
  EXPECT_EQ(held("alice").items.at("potion"), 99);
}

TEST_F(InventoryDomain, AMigrationNeitherPassesMaxDistinctItemsNorNamesAnUndefinedTarget) {
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.items["charm"] = {"charm", true, 5, true, false, false};
  }
  grant("alice", {{"potion", 1}, {"sword", 1}}, {}, "a");
  grant("bob", {{"charm", 1}}, {}, "b");
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.items.erase("potion");
    catalog_.all.migrations["potion"] = {"potion", Amount{"medal", 1}, std::nullopt, false, 4};
    catalog_.all.items.erase("charm");
    catalog_.all.migrations["charm"] = {"charm", Amount{"gone", 1}, std::nullopt, false, 4};
  }
  // The operator lowered max_distinct_items below what alice holds.
  Limits limits;
  limits.max_distinct_items = 1;
  InventoryService service(
      repo_, catalog_, limits, [this] { return now_; }, [] { return std::string("x"); });
  const Outcome alice = service.get(player("alice"), "alice");
  EXPECT_EQ(alice.holdings.items.at("potion"), 1);
  EXPECT_EQ(alice.holdings.items.count("medal"), 0u);
  EXPECT_NE(alice.frozen.at("potion").find("max_distinct_items"), std::string::npos)
      << alice.frozen.at("potion");
  const Outcome bob = service.get(player("bob"), "bob");
  EXPECT_EQ(bob.holdings.items.at("charm"), 1);
  EXPECT_NE(bob.frozen.at("charm").find("'gone', which is not in the catalog"), std::string::npos)
      << bob.frozen.at("charm");
}

TEST_F(InventoryDomain, FrozenMeansHeldAndNotDefinedAfterMigrating) {
  grant("alice", {{"potion", 4}, {"medal", 1}}, {}, "a");
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.items.erase("potion");
    catalog_.all.items.erase("medal");
    // potion becomes a defined item held nowhere before; medal's migration names no target.
    catalog_.all.migrations["potion"] = {"potion", Amount{"sword", 1}, std::nullopt, false, 4};
    catalog_.all.migrations["medal"] = {"medal", std::nullopt, std::nullopt, false, 4};
    catalog_.all.items["sword"].max_stack = 10;
  }
  const Outcome o = service_.get(player("alice"), "alice");
  EXPECT_EQ(o.holdings.items.at("sword"), 4);
  EXPECT_EQ(o.frozen.count("sword"), 0u) << "a migration's target is defined, not frozen";
  ASSERT_EQ(o.frozen.count("medal"), 1u) << "an item whose migration is invalid is frozen";
  EXPECT_NE(o.frozen.at("medal").find("names no target"), std::string::npos) << o.frozen.at("medal");
}

TEST_F(InventoryDomain, AMigrationMadeDuringAnotherPlayersChangeIsTheInventorysNotTheirs) {
  grant("alice", {{"potion", 2}, {"sword", 1}}, {}, "a");
  const std::string bytes = service_.offer(player("alice"), req("Transfer", "t"), render, "bob",
                                           {{"sword", 1}}, {}, {}, {}, 0, true);
  const std::string id = bytes.substr(bytes.find("offer=") + 6);
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.items.erase("potion");
    catalog_.all.migrations["potion"] = {"potion", std::nullopt, Amount{"gold", 5}, false, 4};
  }
  service_.accept(player("bob"), req("AcceptOffer", "acc", id), render, id);
  const std::vector<LedgerEntry> entries = repo_.ledger("alice", "", 100).items;
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[1].reason, "catalog migration");
  EXPECT_EQ(entries[1].actor, "inventory");
  EXPECT_EQ(entries[1].idempotency_key, "");
  EXPECT_EQ(entries[2].reason, "transfer");
  EXPECT_EQ(entries[2].actor, "player:bob");
}

TEST_F(InventoryDomain, AFailedAcceptDoesNotTellTheAccepterWhatTheSenderHolds) {
  grant("alice", {{"potion", 7}}, {{"gold", 12'345}}, "a");
  const std::string bytes = service_.offer(player("alice"), req("Transfer", "t"), render, "bob",
                                           {{"potion", 5}}, {}, {}, {}, 0, true);
  const std::string id = bytes.substr(bytes.find("offer=") + 6);
  service_.consume(player("alice"), req("Consume", "c"), render, {{"potion", 4}}, "");
  EXPECT_EQ(refused([&] { service_.accept(player("bob"), req("AcceptOffer", "acc", id), render, id); }),
            Kind::kFailedPrecondition);
  EXPECT_NE(last_error_.find("the sender can no longer fulfil offer '" + id + "'"), std::string::npos)
      << last_error_;
  EXPECT_EQ(last_error_.find("holds 3"), std::string::npos) << last_error_;
  EXPECT_EQ(last_error_.find("alice"), std::string::npos) << last_error_;
  // A trade whose payment would pass the sender's max_balance says no more about the sender either.
  grant("bob", {}, {{"gold", 1'000'000}}, "b");
  const std::string trade = service_.offer(player("alice"), req("OfferTrade", "t2"), render, "bob",
                                           {{"potion", 1}}, {}, {}, {{"gold", 999'000}}, 0, false);
  const std::string trade_id = trade.substr(trade.find("offer=") + 6);
  EXPECT_EQ(refused([&] {
              service_.accept(player("bob"), req("AcceptOffer", "acc2", trade_id), render, trade_id);
            }),
            Kind::kFailedPrecondition);
  EXPECT_EQ(last_error_.find("12345"), std::string::npos) << last_error_;
  EXPECT_NE(last_error_.find("the sender can no longer fulfil"), std::string::npos) << last_error_;
}

TEST_F(InventoryDomain, ARefusedBundleLineNamesTheBundleAndItsLine) {
  {
    std::lock_guard lock(catalog_.mu);
    catalog_.all.bundles["old"] = {"old", {{"potion", 1}, {"relic", 1}}, {}, false};  // relic is retired
  }
  EXPECT_EQ(refused([&] {
              grant("alice", {{"sword", 1}}, {}, "b", {"starter", "old"});
            }),
            Kind::kFailedPrecondition);
  EXPECT_NE(last_error_.find("bundle_ids[1] ('old').items[1].item_id 'relic' is retired"), std::string::npos)
      << last_error_;
  EXPECT_EQ(repo_.ledger_size(), 0u);
  // Over a stack: the bundle's line that passes it is named.
  grant("alice", {{"potion", 97}}, {}, "c");
  EXPECT_EQ(refused([&] { grant("alice", {}, {}, "d", {"starter"}); }), Kind::kFailedPrecondition);
  EXPECT_NE(last_error_.find("bundle_ids[0] ('starter').items[0]: alice would hold 100 of 'potion'"),
            std::string::npos)
      << last_error_;
}

TEST_F(InventoryDomain, OfferLifetimesMustFitTogether) {
  Limits limits;
  limits.default_offer_ttl_s = 7200;
  limits.max_offer_ttl_s = 3600;
  auto make = [&] {
    InventoryService service(
        repo_, catalog_, limits, [] { return int64_t{0}; }, [] { return std::string(); });
  };
  EXPECT_EQ(refused(make), Kind::kInvalidArgument);
  EXPECT_NE(last_error_.find("default_offer_ttl_s is 7200; it must be between 1 and max_offer_ttl_s (3600)"),
            std::string::npos)
      << last_error_;
  limits.default_offer_ttl_s = 60;
  limits.max_offer_ttl_s = int64_t{400} * 24 * 3600;
  EXPECT_EQ(refused(make), Kind::kInvalidArgument);
  EXPECT_NE(last_error_.find("max_offer_ttl_s is"), std::string::npos) << last_error_;
  // An offer's expiry near the end of int64 is refused, not wrapped around.
  limits.max_offer_ttl_s = kMostOfferTtlS;
  InventoryService late(
      repo_, catalog_, limits, [] { return std::numeric_limits<int64_t>::max() - 1000; },
      [] { return std::string("late-offer"); });
  grant("alice", {{"potion", 1}}, {}, "a");
  EXPECT_EQ(refused([&] {
              late.offer(player("alice"), req("Transfer", "t"), render, "bob", {{"potion", 1}}, {}, {}, {},
                         60, true);
            }),
            Kind::kInvalidArgument);
  EXPECT_NE(last_error_.find("expires_in_s would overflow"), std::string::npos) << last_error_;
}

TEST_F(InventoryDomain, VerifyStopsAtTheDocumentsSequenceWhenAChangeLandsWhileItRuns) {
  grant("alice", {{"potion", 1}}, {}, "a");
  // A repository that lets one more grant land between the document's read and the ledger's.
  class Racing final : public InventoryRepository {
   public:
    Racing(InMemoryRepository& inner, std::function<void()> between)
        : inner_(inner), between_(std::move(between)) {}
    PlayerState load(const std::string& p) override { return inner_.load(p); }
    std::optional<IdempotencyRecord> idempotency(const std::string& k) override {
      return inner_.idempotency(k);
    }
    bool commit(const ChangeSet& c) override { return inner_.commit(c); }
    std::optional<StoredOffer> offer(const std::string& id) override { return inner_.offer(id); }
    Page<std::string> offer_ids(const std::string& p, std::optional<bool> o, const std::string& c,
                                uint32_t l) override {
      return inner_.offer_ids(p, o, c, l);
    }
    Page<LedgerEntry> ledger(const std::string& p, const std::string& c, uint32_t l) override {
      if (between_) std::exchange(between_, nullptr)();
      return inner_.ledger(p, c, l);
    }
    Page<std::string> players(const std::string& c, uint32_t l) override { return inner_.players(c, l); }
    bool anyone_holds(const std::string& i) override { return inner_.anyone_holds(i); }
    Page<StoredKey> idempotency_keys(const std::string& c, uint32_t l) override {
      return inner_.idempotency_keys(c, l);
    }
    Page<StoredOffer> all_offers(const std::string& c, uint32_t l) override {
      return inner_.all_offers(c, l);
    }
    void erase(const std::vector<std::string>& k, const std::vector<StoredOffer>& o) override {
      inner_.erase(k, o);
    }

   private:
    InMemoryRepository& inner_;
    std::function<void()> between_;
  } racing(repo_, [&] { grant("alice", {{"potion", 1}}, {}, "b"); });
  InventoryService verifier(
      racing, catalog_, Limits{}, [this] { return now_; }, [] { return std::string("x"); });
  const VerifyReport report = verifier.verify(admin_, "alice", "", 0);
  EXPECT_TRUE(report.mismatches.empty()) << report.mismatches[0].kind << " " << report.mismatches[0].id;
  EXPECT_EQ(report.entries_checked, 1u);
  EXPECT_EQ(held("alice").items.at("potion"), 2);
}

TEST_F(InventoryDomain, VerifyBoundsItsWorkPerCallAndContinuesWithinAPlayer) {
  const uint64_t entries = InventoryService::kVerifyEntriesPerCall + 5;
  for (uint64_t i = 0; i < entries; ++i) grant("alice", {}, {{"gold", 1}}, "g" + std::to_string(i));
  grant("bob", {}, {{"gold", 1}}, "bob");
  VerifyReport first = service_.verify(admin_, "", "", 0);
  EXPECT_EQ(first.entries_checked, InventoryService::kVerifyEntriesPerCall);
  EXPECT_EQ(first.players_checked, 0u);
  ASSERT_FALSE(first.next_cursor.empty());
  // A change between the calls: the check continues to the sequence it began at.
  grant("alice", {}, {{"gold", 1}}, "later");
  VerifyReport second = service_.verify(admin_, "", first.next_cursor, 0);
  EXPECT_EQ(second.entries_checked, 6u);
  EXPECT_EQ(second.players_checked, 2u);
  EXPECT_TRUE(first.mismatches.empty());
  EXPECT_TRUE(second.mismatches.empty());
  EXPECT_TRUE(second.next_cursor.empty());
  // Cancelled: stops between pages.
  EXPECT_EQ(refused([&] { service_.verify(admin_, "alice", "", 0, [] { return true; }); }), Kind::kAborted);
  EXPECT_EQ(refused([&] { service_.verify(admin_, "alice", "verify1;zz", 0); }), Kind::kInvalidArgument);
}

TEST_F(InventoryDomain, VerifyFindsATradeEntryThatDoesNotMatchItsOffer) {
  grant("alice", {{"potion", 2}}, {}, "a");
  grant("bob", {}, {{"gold", 100}}, "b");
  const std::string bytes = service_.offer(player("alice"), req("OfferTrade", "o"), render, "bob",
                                           {{"potion", 2}}, {}, {}, {{"gold", 100}}, 0, false);
  const std::string id = bytes.substr(bytes.find("offer=") + 6);
  service_.accept(player("bob"), req("AcceptOffer", "acc"), render, id);
  EXPECT_TRUE(service_.verify(admin_, "", "", 0).mismatches.empty());
  // Alice's side credited 1000 gold instead of 100: her own sums still add up, the offer does not.
  repo_.rewrite_last_entry("alice", [](LedgerEntry& e) {
    e.currency_deltas = {{"gold", 1000}};
    e.resulting_currencies = {{"gold", 1000}};
  });
  repo_.set_balance("alice", "gold", 1000);
  const VerifyReport report = service_.verify(admin_, "alice", "", 0);
  ASSERT_EQ(report.mismatches.size(), 1u);
  EXPECT_EQ(report.mismatches[0].kind, "offer");
}

TEST_F(InventoryDomain, ConcurrentOffersDoNotPassMaxOpenOffers) {
  Limits limits;
  limits.max_open_offers = 3;
  InventoryService service(
      repo_, catalog_, limits, [this] { return now_; },
      [this] { return "offer-" + std::to_string(++offers_); });
  grant("alice", {{"potion", 50}}, {}, "a");
  std::atomic<int> made{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      try {
        service.offer(player("alice"), req("Transfer", "t" + std::to_string(t)), render, "bob",
                      {{"potion", 1}}, {}, {}, {}, 0, true);
        ++made;
      } catch (const InventoryError&) {
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(made.load(), 3);
  EXPECT_EQ(held("alice").open_offers, static_cast<uint32_t>(made.load()));
  for (int i = made.load(); i < 3; ++i) {  // any that met too many conflicts
    service.offer(player("alice"), req("Transfer", "more" + std::to_string(i)), render, "bob",
                  {{"potion", 1}}, {}, {}, {}, 0, true);
  }
  EXPECT_EQ(refused([&] {
              service.offer(player("alice"), req("Transfer", "over"), render, "bob", {{"potion", 1}}, {}, {},
                            {}, 0, true);
            }),
            Kind::kResourceExhausted);
  // Closing one (cancel, decline or accept) makes room for one more.
  const Page<std::string> open = repo_.offer_ids("alice", true, "", 10);
  ASSERT_EQ(open.items.size(), 3u);
  service.close(player("alice"), req("CancelOffer", "c"), render, open.items[0], OfferState::kCancelled);
  service.close(player("bob"), req("DeclineOffer", "d"), render, open.items[1], OfferState::kDeclined);
  service.accept(player("bob"), req("AcceptOffer", "x"), render, open.items[2]);
  EXPECT_EQ(held("alice").open_offers, 0u);
  service.offer(player("alice"), req("Transfer", "again"), render, "bob", {{"potion", 1}}, {}, {}, {}, 0,
                true);
  EXPECT_EQ(held("alice").open_offers, 1u);
}

TEST_F(InventoryDomain, OffersGoOnlyToIdsTheRecipientCheckAccepts) {
  service_.recipients_must([](const std::string& id) { return id.size() == 3; }, "three characters");
  grant("alice", {{"potion", 5}}, {}, "a");
  EXPECT_EQ(refused([&] {
              service_.offer(player("alice"), req("Transfer", "t"), render, "nobody", {{"potion", 1}}, {}, {},
                             {}, 0, true);
            }),
            Kind::kInvalidArgument);
  EXPECT_EQ(last_error_, "to_player_id 'nobody' is not a player id (three characters)");
  service_.offer(player("alice"), req("Transfer", "t2"), render, "bob", {{"potion", 1}}, {}, {}, {}, 0, true);
}

TEST_F(InventoryDomain, TheSweepDeletesRecordsPastTheReplayWindowAndOldClosedOffersPageByPage) {
  repo_.clock_ms = now_;
  grant("alice", {{"potion", 10}}, {}, "old-grant");
  const std::string bytes = service_.offer(player("alice"), req("Transfer", "t"), render, "bob",
                                           {{"potion", 1}}, {}, {}, {}, 0, true);
  const std::string closed = bytes.substr(bytes.find("offer=") + 6);
  service_.close(player("alice"), req("CancelOffer", "c"), render, closed, OfferState::kCancelled);
  service_.offer(player("alice"), req("Transfer", "still-open"), render, "bob", {{"potion", 1}}, {}, {}, {},
                 0, true);
  Retention retention;
  retention.replay_window_ms = 1000;
  retention.closed_offer_retention_ms = 5000;
  retention.page_size = 2;
  now_ += 2000;  // past the replay window, not past the offers' retention
  repo_.clock_ms = now_;
  grant("alice", {{"potion", 1}}, {}, "new-grant");
  SweepCursor cursor;
  size_t deleted = 0;
  do {
    deleted += service_.sweep(cursor, retention);
  } while (!cursor.idempotency.empty() || !cursor.offers.empty());
  EXPECT_EQ(deleted, 4u);  // old-grant, t, c, still-open; not new-grant
  EXPECT_EQ(repo_.idempotency_count(), 1u);
  EXPECT_EQ(repo_.offer_count(), 2u);
  // A replay inside the window still gets its first answer; past it, the key is a new change.
  grant("alice", {{"potion", 1}}, {}, "new-grant");
  EXPECT_EQ(held("alice").items.at("potion"), 11);  // 10 + 1 once; an open offer holds nothing back
  now_ += 5000;  // past the closed offer's retention: it goes; the open one stays
  do {
    service_.sweep(cursor, retention);
  } while (!cursor.idempotency.empty() || !cursor.offers.empty());
  EXPECT_EQ(repo_.offer_count(), 1u);
  EXPECT_FALSE(repo_.offer(closed).has_value());
}

}  // namespace
}  // namespace gameverse::inventory
