// The catalog's rules without a host: validation, diffs, removal and migration rules, changes for
// client caches, and publishing over an in-memory repository.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <random>
#include <thread>

#include "domain/catalog.hpp"
#include "domain/catalog_service.hpp"

namespace gameverse::resources {
namespace {

Item item(const std::string& id, int64_t max_stack = 99, bool retired = false) {
  Item d;
  d.id = id;
  d.name = "The " + id;
  d.category = "weapon";
  d.stackable = true;
  d.max_stack = max_stack;
  d.tradable = true;
  d.retired = retired;
  return d;
}

Currency currency(const std::string& id, int64_t max_balance = 1'000'000, bool retired = false) {
  return {id, "Currency " + id, max_balance, retired};
}

Bundle bundle(const std::string& id, std::vector<ItemAmount> items,
              std::vector<CurrencyAmount> currencies = {}) {
  return {id, "Bundle " + id, std::move(items), std::move(currencies), false};
}

Asset asset(const std::string& id) {
  return {id, "sha256:abcdef", 1024, "https://cdn.example.com/" + id};
}

// Publishes `request` over `current` and returns the next catalog (version bumped).
Catalog apply(const Catalog& current, const PublishRequest& request) {
  PublishPlan plan = plan_publish(current, request, Limits{});
  plan.next.version = current.version + 1;
  return plan.next;
}

// The message of the ValidationError `f` throws; fails the test when it throws none.
template <class F>
std::string refusal(F&& f) {
  try {
    f();
  } catch (const ValidationError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ValidationError";
  return {};
}

Catalog base() {
  PublishRequest r;
  r.items = {item("sword"), item("shield"), item("old_hat", 1, true)};
  r.currencies = {currency("gold")};
  r.bundles = {bundle("starter", {{"sword", 1}}, {{"gold", 100}})};
  r.assets = {asset("sword")};
  return apply(Catalog{}, r);
}

TEST(CatalogRules, AWholeCatalogIsValidatedAndDiffed) {
  const Catalog c = base();
  EXPECT_EQ(c.items.size(), 3u);
  EXPECT_EQ(c.size(), 6u);
  PublishRequest again;
  again.replace_all = true;
  again.items = {item("sword"), item("shield"), item("old_hat", 1, true)};
  again.currencies = {currency("gold")};
  again.bundles = {bundle("starter", {{"sword", 1}}, {{"gold", 100}})};
  again.assets = {asset("sword")};
  EXPECT_TRUE(plan_publish(c, again, Limits{}).unchanged());
  again.items[1].max_stack = 5;
  const PublishPlan plan = plan_publish(c, again, Limits{});
  ASSERT_EQ(plan.upserted.size(), 1u);
  EXPECT_EQ(plan.upserted[0], (Ref{Kind::kItem, "shield"}));
  EXPECT_TRUE(plan.removed.empty());
}

TEST(CatalogRules, BadFieldsAreNamed) {
  const Catalog c = base();
  auto with_item = [&](Item d) {
    PublishRequest r;
    r.items = {std::move(d)};
    return refusal([&] { plan_publish(c, r, Limits{}); });
  };
  Item bad = item("x y");
  EXPECT_NE(with_item(bad).find("item 'x y' (#0): id"), std::string::npos);
  bad = item("axe");
  bad.name = "";
  EXPECT_NE(with_item(bad).find("item 'axe' (#0): name"), std::string::npos);
  bad = item("axe", 0);
  EXPECT_NE(with_item(bad).find("max_stack is 0"), std::string::npos);
  bad = item("axe", std::numeric_limits<int64_t>::max());
  EXPECT_NE(with_item(bad).find("max_stack"), std::string::npos);
  bad = item("axe", -1);
  EXPECT_NE(with_item(bad).find("max_stack is -1"), std::string::npos);
  bad = item("axe");
  bad.name = std::string(129, 'n');
  EXPECT_NE(with_item(bad).find("name must be 1 to 128"), std::string::npos);
  bad = item("axe");
  bad.name = "bad\xff";
  EXPECT_NE(with_item(bad).find("name"), std::string::npos);
  bad = item("axe");
  bad.properties["damage"] = std::numeric_limits<double>::infinity();
  EXPECT_NE(with_item(bad).find("property 'damage' is not a finite number"), std::string::npos);
  bad = item("axe");
  bad.properties["lore"] = std::string(2000, 'x');
  EXPECT_NE(with_item(bad).find("property 'lore'"), std::string::npos);
  bad = item("axe");
  bad.properties["unset"] = PropertyValue{};
  EXPECT_NE(with_item(bad).find("property 'unset' has no value"), std::string::npos);
  bad = item("axe");
  for (int i = 0; i < 33; ++i) bad.properties["p" + std::to_string(i)] = int64_t{1};
  EXPECT_NE(with_item(bad).find("33 properties; at most 32"), std::string::npos);

  PublishRequest r;
  r.currencies = {currency("gems", 0)};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("currency 'gems' (#0): max_balance is 0"),
            std::string::npos);
  r = {};
  Asset a = asset("icon");
  a.url = "ftp://x/y";
  r.assets = {a};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("asset 'icon' (#0): url"), std::string::npos);
  a = asset("icon");
  a.size_bytes = -5;
  r.assets = {a};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("size_bytes is -5"), std::string::npos);
}

TEST(CatalogRules, DuplicateIdsAndDanglingReferencesAreRefused) {
  const Catalog c = base();
  PublishRequest r;
  r.items = {item("axe"), item("axe")};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("item 'axe' (#1): the id appears twice"),
            std::string::npos);
  r = {};
  r.bundles = {bundle("pack", {{"bow", 1}})};
  EXPECT_NE(refusal([&] {
              plan_publish(c, r, Limits{});
            }).find("bundle 'pack': items names 'bow', which is not a defined item"),
            std::string::npos);
  r.bundles = {bundle("pack", {{"old_hat", 1}})};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("'old_hat', which is retired"),
            std::string::npos);
  r.bundles = {bundle("pack", {}, {{"gems", 1}})};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("currencies names 'gems'"),
            std::string::npos);
  r.bundles = {bundle("pack", {{"sword", 100}})};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("over its max_stack 99"), std::string::npos);
  // Retiring an item a live bundle grants breaks the bundle.
  r = {};
  r.items = {item("sword", 99, true)};
  EXPECT_NE(refusal([&] {
              plan_publish(c, r, Limits{});
            }).find("bundle 'starter': items names 'sword', which is retired"),
            std::string::npos);
  // Replacing the whole catalog without an item a bundle grants.
  r = {};
  r.replace_all = true;
  r.items = {item("shield"), item("old_hat", 1, true)};
  r.currencies = {currency("gold")};
  r.bundles = {bundle("starter", {{"sword", 1}})};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("not a defined item"), std::string::npos);
}

TEST(CatalogRules, RemovingAnItemNeedsAMigrationOrAnEarlierRetirement) {
  const Catalog c = base();
  PublishRequest r;
  r.remove = {{Kind::kItem, "shield"}};
  EXPECT_NE(refusal([&] {
              plan_publish(c, r, Limits{});
            }).find("item 'shield' is removed without a migration and was not retired in version 1"),
            std::string::npos);
  // Retired earlier: allowed if nobody holds it (the caller asks).
  r.remove = {{Kind::kItem, "old_hat"}};
  PublishPlan plan = plan_publish(c, r, Limits{});
  EXPECT_EQ(plan.needs_unheld, std::vector<std::string>{"old_hat"});
  // With a migration: no holder check.
  r.remove = {{Kind::kItem, "shield"}};
  Migration m;
  m.from_item_id = "shield";
  m.to_currency = CurrencyAmount{"gold", 10};
  r.migrations = {m};
  plan = plan_publish(c, r, Limits{});
  EXPECT_TRUE(plan.needs_unheld.empty());
  ASSERT_EQ(plan.new_migrations.size(), 1u);
  EXPECT_TRUE(plan.next.migrations.contains("shield"));
  // What a kept migration converts into cannot go afterwards.
  Catalog after = apply(c, r);
  PublishRequest next;
  next.items = {item("gold_bar")};
  Migration again;
  again.from_item_id = "sword";
  again.to_item = ItemAmount{"gold_bar", 1};
  next.remove = {{Kind::kItem, "sword"}};
  next.migrations = {again};
  next.bundles = {bundle("starter", {{"gold_bar", 1}})};
  after = apply(after, next);
  PublishRequest drop;
  drop.remove = {{Kind::kItem, "gold_bar"}};
  Migration discard;
  discard.from_item_id = "gold_bar";
  discard.discard = true;
  drop.migrations = {discard};
  drop.bundles = {bundle("starter", {}, {{"gold", 1}})};  // the pack no longer grants it
  EXPECT_NE(refusal([&] {
              plan_publish(after, drop, Limits{});
            }).find("item 'gold_bar' cannot be removed: the migration of removed item 'sword'"),
            std::string::npos);
  // Defined and removed at once.
  r.items = {item("shield")};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("item 'shield' is both defined and removed"),
            std::string::npos);
  // Currencies are never removed.
  r = {};
  r.remove = {{Kind::kCurrency, "gold"}};
  r.bundles = {bundle("starter", {{"sword", 1}})};
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("currency 'gold' cannot be removed"),
            std::string::npos);
}

TEST(CatalogRules, MigrationsAreCheckedAsAWhole) {
  const Catalog c = base();
  auto refused = [&](Migration m, std::vector<Ref> remove = {{Kind::kItem, "shield"}}) {
    PublishRequest r;
    r.remove = std::move(remove);
    r.migrations = {std::move(m)};
    return refusal([&] { plan_publish(c, r, Limits{}); });
  };
  Migration m;
  m.from_item_id = "shield";
  EXPECT_NE(refused(m).find("states nothing"), std::string::npos);
  m.discard = true;
  m.to_item = ItemAmount{"sword", 1};
  EXPECT_NE(refused(m).find("discard cannot go with"), std::string::npos);
  m.discard = false;
  m.to_item = ItemAmount{"bow", 1};
  EXPECT_NE(refused(m).find("to_item.item_id 'bow' is not a defined, non-retired item"), std::string::npos);
  m.to_item = ItemAmount{"old_hat", 1};
  EXPECT_NE(refused(m).find("'old_hat' is not a defined, non-retired item"), std::string::npos);
  m.to_item = ItemAmount{"sword", 0};
  EXPECT_NE(refused(m).find("to_item.count is 0"), std::string::npos);
  m.to_item = ItemAmount{"sword", 1000};
  EXPECT_NE(refused(m).find("to_item.count is 1000; it must be 1 to 99"), std::string::npos);
  m.to_item = ItemAmount{"shield", 1};  // into itself, which goes
  EXPECT_NE(refused(m).find("'shield' is not a defined"), std::string::npos);
  m.to_item.reset();
  m.discard = true;
  m.from_item_id = "sword";  // not removed
  EXPECT_NE(refused(m).find("from_item_id is not an item this publish removes"), std::string::npos);
}

// The plan lists the kept migration it would drop; the service publishes it only when nobody
// holds the id (CatalogService.ARemovedIdIsDefinedAgainOnlyWhenNobodyHoldsIt).
TEST(CatalogRules, ARemovedIdDefinedAgainListsTheMigrationItDrops) {
  Catalog c = base();
  PublishRequest r;
  r.remove = {{Kind::kItem, "shield"}};
  Migration m;
  m.from_item_id = "shield";
  m.discard = true;
  r.migrations = {m};
  c = apply(c, r);
  EXPECT_TRUE(c.migrations.contains("shield"));
  r = {};
  r.items = {item("shield")};
  const PublishPlan plan = plan_publish(c, r, Limits{});
  EXPECT_EQ(plan.cleared_migrations, std::vector<std::string>{"shield"});
  EXPECT_FALSE(plan.next.migrations.contains("shield"));
}

// A full stack of the removed item, converted, must fit the target's limit (int64 edges included).
TEST(CatalogRules, AMigrationMustFitTheTargetsLimits) {
  PublishRequest r;
  r.items = {item("shield", 10), item("sword", 99), item("huge", 1'000'000'000'000'000),
             item("vast", 1'000'000'000'000'000)};
  r.currencies = {currency("gold", 1000)};
  const Catalog c = apply(Catalog{}, r);
  auto refused = [&](Migration m, const std::string& from = "shield") {
    PublishRequest p;
    p.remove = {{Kind::kItem, from}};
    m.from_item_id = from;
    p.migrations = {std::move(m)};
    return refusal([&] { plan_publish(c, p, Limits{}); });
  };
  Migration m;
  m.to_item = ItemAmount{"sword", 10};  // 10 x 10 = 100 > 99
  std::string message = refused(m);
  EXPECT_NE(message.find(
                "a full stack of 10 units times to_item.count 10 is over the max_stack 99 of item 'sword'"),
            std::string::npos)
      << message;
  m.to_item.reset();
  m.to_currency = CurrencyAmount{"gold", 101};  // 10 x 101 = 1010 > 1000
  message = refused(m);
  EXPECT_NE(message.find("to_currency.amount 101 is over the max_balance 1000 of currency 'gold'"),
            std::string::npos)
      << message;
  // Past int64: 10^15 x 10^4 does not wrap around into a negative number that fits.
  m.to_currency.reset();
  m.to_item = ItemAmount{"vast", 10000};
  message = refused(m, "huge");
  EXPECT_NE(message.find("is over the max_stack 1000000000000000 of item 'vast'"), std::string::npos)
      << message;
  // What fits is accepted.
  PublishRequest ok;
  ok.remove = {{Kind::kItem, "shield"}};
  Migration fits;
  fits.from_item_id = "shield";
  fits.to_item = ItemAmount{"sword", 9};
  fits.to_currency = CurrencyAmount{"gold", 100};
  ok.migrations = {fits};
  EXPECT_EQ(plan_publish(c, ok, Limits{}).new_migrations.size(), 1u);
}

// Kept migrations convert lazily: a later publish may not lower a target's limit below what a
// full stack of the removed item converts into.
TEST(CatalogRules, AKeptMigrationsTargetsKeepHoldingAFullStack) {
  PublishRequest r;
  r.items = {item("shield", 10), item("sword", 99)};
  r.currencies = {currency("gold", 1000)};
  Catalog c = apply(Catalog{}, r);
  PublishRequest remove;
  remove.remove = {{Kind::kItem, "shield"}};
  Migration m;
  m.from_item_id = "shield";
  m.to_item = ItemAmount{"sword", 5};          // a full stack: 50 swords
  m.to_currency = CurrencyAmount{"gold", 80};  // and 800 gold
  remove.migrations = {m};
  c = apply(c, remove);
  c.migrations.at("shield").catalog_version = 2;  // as the service sets it
  EXPECT_EQ(c.migrations.at("shield").from_max_stack, 10);
  PublishRequest lower;
  lower.items = {item("sword", 49)};
  std::string message = refusal([&] { plan_publish(c, lower, Limits{}); });
  EXPECT_NE(
      message.find("item 'sword': max_stack 49 is too low: the migration of removed item 'shield' (version "
                   "2) converts a full stack of 10 into 50 of it"),
      std::string::npos)
      << message;
  lower.items = {item("sword", 50)};
  EXPECT_NO_THROW(plan_publish(c, lower, Limits{}));
  PublishRequest poorer;
  poorer.currencies = {currency("gold", 799)};
  message = refusal([&] { plan_publish(c, poorer, Limits{}); });
  EXPECT_NE(message.find("currency 'gold': max_balance 799 is too low"), std::string::npos) << message;
}

// Lowering max_catalog_definitions below the catalog's size blocks growth, not shrinking.
TEST(CatalogRules, ACatalogOverALoweredLimitCanStillShrink) {
  const Catalog c = base();  // 6 definitions
  Limits lower;
  lower.max_catalog_definitions = 3;
  PublishRequest shrink;
  shrink.remove = {{Kind::kAsset, "sword"}};
  EXPECT_EQ(plan_publish(c, shrink, lower).removed.size(), 1u);
  PublishRequest same_size;
  same_size.items = {item("sword", 5)};
  EXPECT_EQ(plan_publish(c, same_size, lower).upserted.size(), 1u);
  PublishRequest grow;
  grow.items = {item("bow")};
  EXPECT_NE(
      refusal([&] { plan_publish(c, grow, lower); }).find("the catalog would hold 7 definitions; at most 3"),
      std::string::npos);
}

// Names and text properties refuse C0 and C1 controls, bidirectional overrides and isolates, and
// malformed UTF-8; other scripts and emoji pass.
TEST(CatalogRules, TextRefusesControlsAndBidiOverrides) {
  const Catalog c = base();
  auto named = [&](const std::string& name) {
    PublishRequest r;
    Item i = item("sword");
    i.name = name;
    r.items = {i};
    return r;
  };
  for (const std::string& bad :
       {std::string("a\x01"), std::string("a\x7f"), std::string("a\xc2\x85"), std::string("a\xc2\x9f"),
        std::string("a\xe2\x80\xae"), std::string("a\xe2\x80\xaa"), std::string("a\xe2\x81\xa6"),
        std::string("a\xe2\x81\xa9"), std::string("a\xc0\xaf"), std::string("a\xe0\x80\xaf"),
        std::string("a\xed\xa0\x80"), std::string("a\xf4\x90\x80\x80")}) {
    EXPECT_NE(refusal([&] { plan_publish(c, named(bad), Limits{}); }).find("name must be 1 to 128 bytes"),
              std::string::npos)
        << "accepted a name with bytes of " << bad.substr(1).size();
  }
  for (const std::string& good : {std::string("\xc3\xa9p\xc3\xa9"
                                              "e"),
                                  std::string("\xe5\x89\xa3"), std::string("\xf0\x9f\x97\xa1"),
                                  std::string("a\xc2\xa0"
                                              "b")}) {
    EXPECT_NO_THROW(plan_publish(c, named(good), Limits{})) << good;
  }
  PublishRequest r = named("Sword");
  r.items[0].properties["lore"] = std::string("evil\xe2\x80\xaetxt.exe");
  EXPECT_NE(refusal([&] { plan_publish(c, r, Limits{}); }).find("property 'lore' must be at most"),
            std::string::npos);
}

TEST(CatalogRules, APublishLargerThanOneBatchIsRefusedNamingTheLimit) {
  PublishRequest r;
  for (int i = 0; i < 401; ++i) r.items.push_back(item("i" + std::to_string(i)));
  const std::string message = refusal([&] { plan_publish(Catalog{}, r, Limits{}); });
  EXPECT_NE(message.find("changes 401"), std::string::npos) << message;
  EXPECT_NE(message.find("at most 400"), std::string::npos) << message;
}

TEST(CatalogRules, AStaleExpectedVersionIsAVersionMismatch) {
  PublishRequest r;
  r.expected_version = 3;
  try {
    plan_publish(base(), r, Limits{});
    FAIL();
  } catch (const ValidationError& e) {
    EXPECT_EQ(e.reason(), ValidationError::Reason::kVersionMismatch);
    EXPECT_NE(std::string(e.what()).find("builds on version 3 but the current version is 1"),
              std::string::npos);
  }
}

// Random publishes over a small id space, hostile values included: each is refused with a
// ValidationError or leaves a catalog that meets every rule, and nothing else escapes.
TEST(CatalogRules, RandomPublishesEitherFailCleanlyOrKeepEveryRule) {
  std::mt19937_64 random(12);
  const std::vector<std::string> ids = {"a", "b", "c", "d", "", "bad id", std::string(70, 'x'), "\xff"};
  const std::vector<int64_t> quantities = {0,
                                           1,
                                           5,
                                           99,
                                           -1,
                                           std::numeric_limits<int64_t>::min(),
                                           std::numeric_limits<int64_t>::max(),
                                           1'000'000'000'000'000};
  auto pick = [&](const auto& list) { return list[random() % list.size()]; };
  Catalog catalog;
  int accepted = 0;
  for (int round = 0; round < 3000; ++round) {
    PublishRequest r;
    r.replace_all = random() % 8 == 0;
    for (int i = static_cast<int>(random() % 4); i > 0; --i) {
      Item d = item(pick(ids), pick(quantities), random() % 4 == 0);
      if (random() % 8 == 0) d.properties["p"] = PropertyValue{};
      r.items.push_back(d);
    }
    for (int i = static_cast<int>(random() % 2); i > 0; --i)
      r.currencies.push_back(currency(pick(ids), pick(quantities)));
    for (int i = static_cast<int>(random() % 2); i > 0; --i) {
      r.bundles.push_back(
          bundle(pick(ids), {{pick(ids), pick(quantities)}}, {{pick(ids), pick(quantities)}}));
    }
    if (!r.replace_all) {
      for (int i = static_cast<int>(random() % 2); i > 0; --i) {
        r.remove.push_back({static_cast<Kind>(1 + random() % 4), pick(ids)});
      }
    }
    for (int i = static_cast<int>(random() % 2); i > 0; --i) {
      Migration m;
      m.from_item_id = pick(ids);
      if (random() % 2) m.to_item = ItemAmount{pick(ids), pick(quantities)};
      if (random() % 2) m.to_currency = CurrencyAmount{pick(ids), pick(quantities)};
      m.discard = random() % 3 == 0;
      r.migrations.push_back(m);
    }
    PublishPlan plan;
    try {
      plan = plan_publish(catalog, r, Limits{});
    } catch (const ValidationError& e) {
      EXPECT_FALSE(std::string(e.what()).empty());
      continue;
    }
    ++accepted;
    const Catalog& next = plan.next;
    for (const auto& [id, d] : next.items) {
      EXPECT_TRUE(valid_id(id, 64));
      EXPECT_GE(d.max_stack, 1);
    }
    for (const auto& [id, d] : next.currencies) EXPECT_GE(d.max_balance, 1);
    for (const auto& [id, d] : next.bundles) {
      for (const ItemAmount& a : d.items) {
        ASSERT_TRUE(next.items.contains(a.item_id));
        EXPECT_TRUE(d.retired || !next.items.at(a.item_id).retired);
        EXPECT_LE(a.count, next.items.at(a.item_id).max_stack);
      }
      for (const CurrencyAmount& a : d.currencies) ASSERT_TRUE(next.currencies.contains(a.currency_id));
    }
    for (const auto& [id, d] : catalog.currencies)
      EXPECT_TRUE(next.currencies.contains(id)) << "a currency went";
    for (const auto& [id, d] : catalog.items) {
      if (next.items.contains(id)) continue;
      const bool migrated = next.migrations.contains(id);
      const bool unheld_check =
          std::find(plan.needs_unheld.begin(), plan.needs_unheld.end(), id) != plan.needs_unheld.end();
      EXPECT_TRUE(migrated || (d.retired && unheld_check)) << "item " << id << " went unaccounted";
    }
    for (const auto& [from, m] : next.migrations) {
      EXPECT_FALSE(next.items.contains(from));
      EXPECT_TRUE(!m.to_item || next.items.contains(m.to_item->item_id));
    }
    catalog = plan.next;
    catalog.version += 1;
  }
  EXPECT_GT(accepted, 50) << "the generator should reach valid publishes too";
}

TEST(Changes, FromTheRecordsKeptOrRefetchAll) {
  Catalog now = base();
  now.version = 4;
  now.items.erase("shield");
  std::vector<ChangeRecord> history = {
      {3, 0, {{Kind::kItem, "sword"}}, "admin", "p3"},
      {4, 0, {{Kind::kItem, "shield"}, {Kind::kAsset, "sword"}}, "admin", "p4"}};
  Changes ch = changes_since(now, history, 2, 100);
  EXPECT_FALSE(ch.refetch_all);
  EXPECT_EQ(ch.upserted, (std::vector<Ref>{{Kind::kItem, "sword"}, {Kind::kAsset, "sword"}}));
  EXPECT_EQ(ch.removed, (std::vector<Ref>{{Kind::kItem, "shield"}}));
  ch = changes_since(now, history, 3, 100);
  EXPECT_EQ(ch.upserted.size() + ch.removed.size(), 2u);
  EXPECT_TRUE(changes_since(now, history, 1, 100).refetch_all);  // version 2's record is not kept
  EXPECT_TRUE(changes_since(now, history, 0, 100).refetch_all);
  EXPECT_TRUE(changes_since(now, history, 2, 2).refetch_all);  // more than the answer may carry
  ch = changes_since(now, history, 4, 100);
  EXPECT_FALSE(ch.refetch_all);
  EXPECT_TRUE(ch.upserted.empty() && ch.removed.empty());
}

// The repository in memory, with a head that another "host" can move.
class MemoryRepository final : public CatalogRepository {
 public:
  Head head() override { return {state.catalog.version, state.catalog.epoch, state.catalog.publish_id}; }
  CatalogState load(size_t) override { return state; }
  bool commit(const CatalogState& base, const PublishPlan& plan, const ChangeRecord& record,
              int64_t& revision) override {
    if (base.head_revision != state.head_revision) return false;
    state.catalog = plan.next;
    state.history.push_back(record);
    revision = ++state.head_revision;
    ++commits;
    if (lose_answer) throw std::runtime_error("deadline exceeded");
    return true;
  }
  CatalogState state;
  int commits = 0;
  bool lose_answer = false;  // the write holds, its answer is lost
};

TEST(CatalogService, PublishesHoldsAndRefusesAStaleBase) {
  MemoryRepository repo;
  CatalogService service(repo, Limits{}, 10, [] { return int64_t{1000}; });
  service.load();
  PublishRequest r;
  r.expected_version = 0;
  r.items = {item("sword")};
  const auto none = [](const std::vector<std::string>&) { return std::vector<std::string>{}; };
  PublishOutcome out = service.publish(r, none);
  EXPECT_EQ(out.version, 1u);
  EXPECT_EQ(service.current()->catalog.items.size(), 1u);
  EXPECT_EQ(repo.commits, 1);
  // The same again changes nothing and makes no version.
  r.expected_version.reset();
  out = service.publish(r, none);
  EXPECT_TRUE(out.unchanged);
  EXPECT_EQ(repo.commits, 1);
  // Another host moved the head: this one refreshes before planning, so expected_version 1 is stale.
  repo.state.catalog.version = 2;
  repo.state.head_revision = 7;
  r.expected_version = 1;
  r.items = {item("axe")};
  EXPECT_THROW(service.publish(r, none), ValidationError);
  EXPECT_EQ(service.current()->catalog.version, 2u);
}

TEST(CatalogService, ARetiredItemStillHeldIsNotRemoved) {
  MemoryRepository repo;
  CatalogService service(repo, Limits{}, 10, [] { return int64_t{1000}; });
  PublishRequest r;
  r.items = {item("old_hat", 1, true)};
  service.publish(r, [](const std::vector<std::string>&) { return std::vector<std::string>{}; });
  r = {};
  r.remove = {{Kind::kItem, "old_hat"}};
  try {
    service.publish(r, [](const std::vector<std::string>& ids) { return ids; });
    FAIL();
  } catch (const PublishRefused& e) {
    EXPECT_EQ(e.reason(), PublishRefused::Reason::kHeld);
    EXPECT_NE(std::string(e.what()).find("'old_hat' are still held"), std::string::npos);
  }
  EXPECT_EQ(service.current()->catalog.version, 1u);
  EXPECT_EQ(
      service.publish(r, [](const std::vector<std::string>&) { return std::vector<std::string>{}; }).version,
      2u);
  EXPECT_TRUE(service.current()->catalog.items.empty());
}

// Unconverted holdings of a removed item would silently become the new item of the same id: the
// id is defined again only when the inventory says nobody holds it.
TEST(CatalogService, ARemovedIdIsDefinedAgainOnlyWhenNobodyHoldsIt) {
  MemoryRepository repo;
  CatalogService service(repo, Limits{}, 10, [] { return int64_t{1000}; });
  const auto none = [](const std::vector<std::string>&) { return std::vector<std::string>{}; };
  PublishRequest r;
  r.items = {item("shield"), item("sword")};
  service.publish(r, none);
  r = {};
  r.remove = {{Kind::kItem, "shield"}};
  Migration m;
  m.from_item_id = "shield";
  m.to_item = ItemAmount{"sword", 1};
  r.migrations = {m};
  service.publish(r, none);
  r = {};
  r.items = {item("shield", 5)};
  std::vector<std::string> asked;
  try {
    service.publish(r, [&](const std::vector<std::string>& ids) {
      asked = ids;
      return ids;
    });
    FAIL();
  } catch (const PublishRefused& e) {
    EXPECT_EQ(e.reason(), PublishRefused::Reason::kHeld);
    const std::string message = e.what();
    EXPECT_NE(message.find("item(s) 'shield' cannot be defined again"), std::string::npos) << message;
    EXPECT_NE(message.find("removed in version 2, each unit becomes 1 of item 'sword'"), std::string::npos)
        << message;
  }
  EXPECT_EQ(asked, std::vector<std::string>{"shield"});
  EXPECT_EQ(service.current()->catalog.version, 2u);
  EXPECT_TRUE(service.current()->catalog.migrations.contains("shield"));
  // Nobody holds it any more: defined again, the migration goes.
  EXPECT_EQ(service.publish(r, none).version, 3u);
  EXPECT_FALSE(service.current()->catalog.migrations.contains("shield"));
  EXPECT_EQ(service.current()->catalog.items.at("shield").max_stack, 5);
}

// Another host may grant an item until it has read the version that retired it: removal without a
// migration waits removal_after_retirement_ms from the retirement, and the refusal says until when.
TEST(CatalogService, ARetiredItemIsRemovedWithoutAMigrationOnlyOnceEveryHostCanKnow) {
  MemoryRepository repo;
  int64_t now = 1'700'000'000'000;
  Limits limits;
  limits.removal_after_retirement_ms = 10'000;
  CatalogService service(repo, limits, 10, [&] { return now; });
  const auto none = [](const std::vector<std::string>&) { return std::vector<std::string>{}; };
  PublishRequest r;
  r.items = {item("hat"), item("born_retired", 1, true)};
  service.publish(r, none);
  // Defined retired: never grantable anywhere, may go at once.
  r = {};
  r.remove = {{Kind::kItem, "born_retired"}};
  EXPECT_EQ(service.publish(r, none).version, 2u);
  now += 1000;
  r = {};
  r.items = {item("hat", 99, true)};
  service.publish(r, none);  // retired at 1'700'000'001'000
  EXPECT_EQ(service.current()->catalog.retired_since.at("hat"), 1'700'000'001'000);
  now += 9'000;
  r = {};
  r.remove = {{Kind::kItem, "hat"}};
  const std::string message = refusal([&] { service.publish(r, none); });
  EXPECT_NE(message.find("item 'hat' was retired too recently"), std::string::npos) << message;
  EXPECT_NE(message.find("possible from 2023-11-14T22:13:31Z (in 1 s)"), std::string::npos) << message;
  EXPECT_TRUE(service.current()->catalog.items.contains("hat"));
  // Changing a retired item keeps its retirement time.
  PublishRequest rename;
  rename.items = {item("hat", 5, true)};
  service.publish(rename, none);
  EXPECT_EQ(service.current()->catalog.retired_since.at("hat"), 1'700'000'001'000);
  now += 1'000;
  EXPECT_EQ(service.publish(r, none).version, 5u);
  EXPECT_FALSE(service.current()->catalog.items.contains("hat"));
  EXPECT_FALSE(service.current()->catalog.retired_since.contains("hat"));
}

// A store restored from a backup (or a failover that lost the last publish) can show a version
// number this host holds under another history: the host reads it whole, even going back.
TEST(CatalogService, AnotherLineageUnderTheSameOrAnOlderVersionIsReadWhole) {
  MemoryRepository repo;
  CatalogService service(repo, Limits{}, 10, [] { return int64_t{1000}; });
  const auto none = [](const std::vector<std::string>&) { return std::vector<std::string>{}; };
  PublishRequest r;
  r.items = {item("sword")};
  service.publish(r, none);
  const CatalogState backup = repo.state;
  const std::string epoch = service.current()->catalog.epoch;
  EXPECT_EQ(epoch.size(), 32u);
  r.items = {item("lost")};
  service.publish(r, none);
  const std::string lost_publish = service.current()->catalog.publish_id;
  EXPECT_EQ(service.current()->catalog.epoch, epoch);  // kept by later publishes
  // The store goes back to version 1 and another host publishes a different version 2.
  repo.state = backup;
  {
    MemoryRepository& other_store = repo;
    CatalogService other(other_store, Limits{}, 10, [] { return int64_t{2000}; });
    other.load();
    PublishRequest different;
    different.items = {item("kept")};
    EXPECT_EQ(other.publish(different, none).version, 2u);
  }
  EXPECT_TRUE(service.refresh());
  const Catalog& now = service.current()->catalog;
  EXPECT_EQ(now.version, 2u);
  EXPECT_NE(now.publish_id, lost_publish);
  EXPECT_TRUE(now.items.contains("kept"));
  EXPECT_FALSE(now.items.contains("lost"));
  EXPECT_FALSE(service.refresh());
  // Back to version 1 only: held although older.
  repo.state = backup;
  EXPECT_TRUE(service.refresh());
  EXPECT_EQ(service.current()->catalog.version, 1u);
  EXPECT_FALSE(service.current()->catalog.items.contains("kept"));
  // A fresh store: a new epoch.
  repo.state = CatalogState{};
  EXPECT_TRUE(service.refresh());
  EXPECT_EQ(service.current()->catalog.version, 0u);
  r.items = {item("sword")};
  service.publish(r, none);
  EXPECT_EQ(service.current()->catalog.version, 1u);
  EXPECT_NE(service.current()->catalog.epoch, epoch);
}

// The write held but its answer was lost: the head shows this publish's id, so it is reported
// published (and held), not failed.
TEST(CatalogService, ACommitWhoseAnswerWasLostIsFoundByItsPublishId) {
  MemoryRepository repo;
  CatalogService service(repo, Limits{}, 10, [] { return int64_t{1000}; });
  const auto none = [](const std::vector<std::string>&) { return std::vector<std::string>{}; };
  PublishRequest r;
  r.items = {item("sword")};
  service.publish(r, none);
  repo.lose_answer = true;
  r.items = {item("axe")};
  const PublishOutcome out = service.publish(r, none);
  EXPECT_EQ(out.version, 2u);
  EXPECT_FALSE(out.unchanged);
  EXPECT_EQ(service.current()->catalog.version, 2u);
  EXPECT_TRUE(service.current()->catalog.items.contains("axe"));
  // Lost before it was written: the error stands.
  class Failing final : public CatalogRepository {
   public:
    Head head() override { return {}; }
    CatalogState load(size_t) override { return {}; }
    bool commit(const CatalogState&, const PublishPlan&, const ChangeRecord&, int64_t&) override {
      throw std::runtime_error("store unavailable");
    }
  } failing;
  CatalogService nowhere(failing, Limits{}, 10, [] { return int64_t{1000}; });
  EXPECT_THROW(nowhere.publish(r, none), std::runtime_error);
}

// A lost race whose winner left the version number as it was (the head moved, the number did not)
// is not reported as "made version N while built on version N".
TEST(CatalogService, ALostRaceNamesTheVersionOnlyWhenItMoved) {
  MemoryRepository repo;
  CatalogService service(repo, Limits{}, 10, [] { return int64_t{1000}; });
  const auto none = [](const std::vector<std::string>&) { return std::vector<std::string>{}; };
  PublishRequest r;
  r.items = {item("sword")};
  service.publish(r, none);
  repo.state.head_revision += 5;  // rewritten by another host, same version and lineage
  r.items = {item("axe")};
  try {
    service.publish(r, none);
    FAIL();
  } catch (const PublishRefused& e) {
    EXPECT_EQ(e.reason(), PublishRefused::Reason::kConflict);
    EXPECT_EQ(std::string(e.what()).find("made version 1 while"), std::string::npos) << e.what();
    EXPECT_NE(
        std::string(e.what()).find("another publish moved the catalog while this one was built on version 1"),
        std::string::npos)
        << e.what();
  }
}

// A publish may wait seconds for the inventory: a refresh meanwhile (the timer, an announcement)
// does not wait behind it on the host's blocking pool, and is done before the publish lets go.
TEST(CatalogService, ARefreshDuringAPublishDoesNotWaitForIt) {
  MemoryRepository repo;
  CatalogService service(repo, Limits{}, 10, [] { return int64_t{1000}; });
  const auto none = [](const std::vector<std::string>&) { return std::vector<std::string>{}; };
  PublishRequest r;
  r.items = {item("old_hat", 1, true)};
  service.publish(r, none);
  r = {};
  r.remove = {{Kind::kItem, "old_hat"}};
  bool refreshed = true;
  service.publish(r, [&](const std::vector<std::string>&) {
    std::thread timer([&] { refreshed = service.refresh(); });  // would wait for this publish
    timer.join();
    return std::vector<std::string>{};
  });
  EXPECT_FALSE(refreshed);  // left for the publish to do
  EXPECT_EQ(service.current()->catalog.version, 2u);
}

}  // namespace
}  // namespace gameverse::resources
