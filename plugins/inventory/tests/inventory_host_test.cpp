// The inventory plugin in the real host with the real auth and resource-manager plugins, through
// real gRPC clients, on SQLite and on PostgreSQL (the server `tools/gv services` starts):
// permissions at the gate and in the handler, idempotent replays across a restart, bad input,
// concurrent transfers and trades that conserve every total, catalog publishes seen by the
// inventory, and a reload under load.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "eventually.hpp"
#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/host/v1/admin.grpc.pb.h"
#include "gameverse/inventory/v1/inventory.grpc.pb.h"
#include "gameverse/inventoryprobe/v1/inventory_probe.grpc.pb.h"
#include "gameverse/resources/v1/resources.grpc.pb.h"
#include "host_process.hpp"
#include "sign_up.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::inventory::v1;
namespace res = gameverse::resources::v1;
namespace auth = gameverse::auth::v1;
namespace probe = gameverse::inventoryprobe::v1;

constexpr const char* kOperatorToken = "inventory-test-operator-token-01";
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();

std::string random_suffix() {
  std::random_device random;
  char out[17];
  std::snprintf(out, sizeof out, "%08x%08x", random(), random());
  return out;
}

class InventoryThroughTheHost : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run with `tools/gv services`";
      store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + std::string(url) + "\"\n";
    }
    // The PostgreSQL store (and so the catalog) is shared between tests: ids of their own.
    suffix_ = random_suffix();
    start();
  }
  void TearDown() override {
    if (HasFailure() && host_) std::cerr << "host log:\n" << host_->log();
  }

  void start(const std::string& inventory_config = "", bool with_catalog = true) {
    host_.reset();
    host_ = std::make_unique<HostProcess>(config_of(inventory_config, with_catalog));
    inventory_ = pb::Inventory::NewStub(host_->channel());
    resources_ = res::Resources::NewStub(host_->channel());
    auth_ = auth::Auth::NewStub(host_->channel());
    probe_ = probe::InventoryProbe::NewStub(host_->channel());
  }

  std::string config_of(const std::string& inventory_config = "", bool with_catalog = true) const {
    std::string config = "[host]\nwatch = false\ndata_dir = \"" + data_.path().string() + "\"\n" + store_ +
                         "[admin]\ntoken = \"" + kOperatorToken +
                         "\"\n[[plugin]]\nname = \"auth\"\npath = \"" GV_PLUGIN_DIR
                         "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n"
                         "registrations_per_address_per_hour = 100000\n";
    if (with_catalog) {
      config += "[[plugin]]\nname = \"resource-manager\"\npath = \"" GV_PLUGIN_DIR "/resource-manager.so\"\n";
    }
    config += std::string("[[plugin]]\nname = \"inventory\"\npath = \"" GV_PLUGIN_DIR
                          "/inventory.so\"\n[plugin.config]\n"
                          // Only the publish announcement can tell the inventory of a new catalog in time.
                          "catalog_check_interval_ms = 3600000\n") +
              (inventory_config.find("max_offers_per_minute") == std::string::npos
                   ? "max_offers_per_minute = 100000\n"
                   : "") +
              inventory_config + "[[plugin]]\nname = \"inventory-probe\"\npath = \"" GV_PROBE_PLUGIN "\"\n";
    return config;
  }

  std::string id(const std::string& name) const { return name + "-" + suffix_; }

  static void bearer(grpc::ClientContext& context, const std::string& token) {
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  }

  // A new account; with a role, granted by the operator and carried by a refreshed token.
  auth::Session sign_up(const std::string& name, const std::string& role = "") {
    return testing::sign_up(*auth_, id(name), role, kOperatorToken);
  }

  res::ItemDefinition item(const std::string& name, int64_t max_stack, bool tradable = true,
                           bool consumable = false) {
    res::ItemDefinition d;
    d.set_id(id(name));
    d.set_name(name);
    d.set_category("test");
    d.set_stackable(max_stack > 1);
    d.set_max_stack(max_stack);
    d.set_tradable(tradable);
    d.set_consumable(consumable);
    return d;
  }
  res::CurrencyDefinition currency(const std::string& name, int64_t max_balance) {
    res::CurrencyDefinition d;
    d.set_id(id(name));
    d.set_name(name);
    d.set_max_balance(max_balance);
    return d;
  }

  grpc::Status publish(const res::PublishRequest& request, res::PublishResponse* out = nullptr) {
    grpc::ClientContext context;
    bearer(context, kOperatorToken);
    res::PublishResponse ignored;
    return resources_->Publish(&context, request, out != nullptr ? out : &ignored);
  }

  // The catalog most tests use: a tradable gem, a consumable potion, a medal that cannot be
  // traded and a coin currency.
  void publish_standard_catalog() {
    res::PublishRequest request;
    *request.mutable_upsert()->add_items() = item("gem", 1'000'000);
    *request.mutable_upsert()->add_items() = item("potion", 99, true, true);
    *request.mutable_upsert()->add_items() = item("medal", 10, false);
    *request.mutable_upsert()->add_currencies() = currency("coin", 1'000'000'000);
    const grpc::Status status = publish(request);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  pb::ItemAmount* add_item(google::protobuf::RepeatedPtrField<pb::ItemAmount>* to, const std::string& name,
                           int64_t count) {
    pb::ItemAmount* a = to->Add();
    a->set_item_id(id(name));
    a->set_count(count);
    return a;
  }
  pb::CurrencyAmount* add_currency(google::protobuf::RepeatedPtrField<pb::CurrencyAmount>* to,
                                   const std::string& name, int64_t amount) {
    pb::CurrencyAmount* a = to->Add();
    a->set_currency_id(id(name));
    a->set_amount(amount);
    return a;
  }

  grpc::Status grant(const std::string& token, const pb::GrantRequest& request,
                     pb::ChangeResponse* out = nullptr) {
    grpc::ClientContext context;
    bearer(context, token);
    pb::ChangeResponse ignored;
    return inventory_->Grant(&context, request, out != nullptr ? out : &ignored);
  }
  pb::GrantRequest grant_request(const std::string& player, const std::string& key, int64_t gems,
                                 int64_t coins) {
    pb::GrantRequest request;
    request.set_idempotency_key(id(key));  // the operator's keys: shared by every test on PostgreSQL
    request.set_player_id(player);
    if (gems > 0) add_item(request.mutable_items(), "gem", gems);
    if (coins > 0) add_currency(request.mutable_currencies(), "coin", coins);
    return request;
  }

  grpc::Status get_inventory(const std::string& token, const std::string& player, pb::PlayerInventory* out) {
    grpc::ClientContext context;
    bearer(context, token);
    pb::GetInventoryRequest request;
    request.set_player_id(player);
    return inventory_->GetInventory(&context, request, out);
  }
  pb::PlayerInventory inventory_of(const std::string& player) {
    pb::PlayerInventory out;
    const grpc::Status status = get_inventory(kOperatorToken, player, &out);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }
  int64_t count_of(const pb::PlayerInventory& inv, const std::string& name) {
    for (const auto& h : inv.items()) {
      if (h.item_id() == id(name)) return h.count();
    }
    for (const auto& c : inv.currencies()) {
      if (c.currency_id() == id(name)) return c.amount();
    }
    return 0;
  }
  std::vector<pb::LedgerEntry> ledger_of(const std::string& player) {
    std::vector<pb::LedgerEntry> out;
    std::string cursor;
    do {
      grpc::ClientContext context;
      bearer(context, kOperatorToken);
      pb::ListLedgerRequest request;
      request.set_player_id(player);
      request.set_cursor(cursor);
      request.set_page_size(7);  // several pages
      pb::ListLedgerResponse response;
      const grpc::Status status = inventory_->ListLedger(&context, request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      out.insert(out.end(), response.entries().begin(), response.entries().end());
      cursor = response.next_cursor();
    } while (!cursor.empty());
    return out;
  }
  pb::VerifyLedgerResponse verify(const std::string& player) {
    grpc::ClientContext context;
    bearer(context, kOperatorToken);
    pb::VerifyLedgerRequest request;
    request.set_player_id(player);
    pb::VerifyLedgerResponse response;
    const grpc::Status status = inventory_->VerifyLedger(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  // Sends an offer from `from` and has `to` accept it, from `accepters` clients at once with keys
  // of their own; the first failing status, or OK. More than one accept that succeeds is INTERNAL.
  grpc::Status offer_and_accept(const std::string& from_token, const std::string& to_token,
                                const pb::OfferTradeRequest& offer, const std::string& accept_key,
                                bool transfer = false, int accepters = 1) {
    pb::Offer made;
    {
      grpc::ClientContext context;
      bearer(context, from_token);
      grpc::Status status;
      if (transfer) {
        pb::TransferRequest request;
        request.set_idempotency_key(offer.idempotency_key());
        request.set_to_player_id(offer.to_player_id());
        *request.mutable_items() = offer.give_items();
        *request.mutable_currencies() = offer.give_currencies();
        status = inventory_->Transfer(&context, request, &made);
      } else {
        status = inventory_->OfferTrade(&context, offer, &made);
      }
      if (!status.ok()) return status;
    }
    std::vector<grpc::Status> outcomes(static_cast<size_t>(accepters));
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int a = 0; a < accepters; ++a) {
      threads.emplace_back([&, a] {
        grpc::ClientContext context;
        bearer(context, to_token);
        pb::AcceptOfferRequest request;
        request.set_idempotency_key(accepters == 1 ? accept_key : accept_key + "-" + std::to_string(a));
        request.set_offer_id(made.offer_id());
        pb::AcceptOfferResponse accepted;
        ++ready;
        while (ready.load() < accepters) std::this_thread::yield();  // all at once
        outcomes[static_cast<size_t>(a)] = inventory_->AcceptOffer(&context, request, &accepted);
      });
    }
    for (std::thread& t : threads) t.join();
    int succeeded = 0;
    const grpc::Status* failed = nullptr;
    for (const grpc::Status& s : outcomes) {
      if (s.ok()) {
        ++succeeded;
      } else if (failed == nullptr) {
        failed = &s;
      }
    }
    if (succeeded > 1) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "one offer accepted " + std::to_string(succeeded) + " times");
    }
    if (succeeded == 1) return grpc::Status::OK;
    return *failed;
  }

  TempDir data_;
  std::string store_;
  std::string suffix_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<pb::Inventory::Stub> inventory_;
  std::unique_ptr<res::Resources::Stub> resources_;
  std::unique_ptr<auth::Auth::Stub> auth_;
  std::unique_ptr<probe::InventoryProbe::Stub> probe_;
};

TEST_P(InventoryThroughTheHost, PlayersReadTheirOwnModeratorsReadAnyAndOnlyAdminsGrant) {
  publish_standard_catalog();
  const auth::Session alice = sign_up("alice");
  const auth::Session bob = sign_up("bob");
  const auth::Session mod = sign_up("mod", "moderator");
  const auth::Session admin = sign_up("admin", "admin");
  const std::string alice_id = alice.account().id();

  pb::ChangeResponse granted;
  grpc::Status status = grant(admin.access_token(), grant_request(alice_id, "g1", 5, 100), &granted);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(granted.entry().actor(), "player:" + admin.account().id());
  EXPECT_EQ(count_of(granted.inventory(), "gem"), 5);

  pb::PlayerInventory seen;
  ASSERT_TRUE(get_inventory(alice.access_token(), "", &seen).ok());  // their own, by default
  EXPECT_EQ(count_of(seen, "gem"), 5);
  EXPECT_EQ(count_of(seen, "coin"), 100);
  status = get_inventory(bob.access_token(), alice_id, &seen);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(status.error_message().find("only their own"), std::string::npos) << status.error_message();
  {
    grpc::ClientContext context;
    bearer(context, bob.access_token());
    pb::ListLedgerRequest request;
    request.set_player_id(alice_id);
    pb::ListLedgerResponse response;
    EXPECT_EQ(inventory_->ListLedger(&context, request, &response).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  pb::PlayerInventory by_moderator;
  status = get_inventory(mod.access_token(), alice_id, &by_moderator);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(count_of(by_moderator, "gem"), 5);

  // Neither a player nor a moderator may grant or revoke: the gate refuses them.
  for (const auth::Session* s : {&alice, &mod}) {
    EXPECT_EQ(grant(s->access_token(), grant_request(s->account().id(), "self", 1000, 0)).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    grpc::ClientContext context;
    bearer(context, s->access_token());
    pb::RevokeRequest request;
    request.set_idempotency_key("r");
    request.set_player_id(alice_id);
    add_item(request.mutable_items(), "gem", 1);
    pb::ChangeResponse response;
    EXPECT_EQ(inventory_->Revoke(&context, request, &response).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  // Bob cannot spend Alice's items: consumption and offers act on the caller's own inventory.
  {
    grpc::ClientContext context;
    bearer(context, bob.access_token());
    pb::TransferRequest request;
    request.set_idempotency_key("steal");
    request.set_to_player_id(bob.account().id());
    add_item(request.mutable_items(), "gem", 1);
    pb::Offer offer;
    EXPECT_EQ(inventory_->Transfer(&context, request, &offer).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    // Alice offers Bob a gem; only Bob may accept, Alice may not accept for him.
    grpc::ClientContext context;
    bearer(context, alice.access_token());
    pb::TransferRequest request;
    request.set_idempotency_key("gift");
    request.set_to_player_id(bob.account().id());
    add_item(request.mutable_items(), "gem", 2);
    pb::Offer offer;
    ASSERT_TRUE(inventory_->Transfer(&context, request, &offer).ok());
    grpc::ClientContext accept_context;
    bearer(accept_context, alice.access_token());
    pb::AcceptOfferRequest accept;
    accept.set_idempotency_key("self-accept");
    accept.set_offer_id(offer.offer_id());
    pb::AcceptOfferResponse accepted;
    EXPECT_EQ(inventory_->AcceptOffer(&accept_context, accept, &accepted).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    grpc::ClientContext bob_context;
    bearer(bob_context, bob.access_token());
    accept.set_idempotency_key("bob-accepts");
    status = inventory_->AcceptOffer(&bob_context, accept, &accepted);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(count_of(accepted.inventory(), "gem"), 2);
    EXPECT_EQ(accepted.offer().state(), pb::OFFER_STATE_ACCEPTED);
  }
  EXPECT_EQ(count_of(inventory_of(alice_id), "gem"), 3);
  {
    // Offers listed for each side; the recipient declines, and a declined offer cannot be accepted.
    grpc::ClientContext context;
    bearer(context, alice.access_token());
    pb::OfferTradeRequest request;
    request.set_idempotency_key("trade");
    request.set_to_player_id(bob.account().id());
    add_item(request.mutable_give_items(), "gem", 1);
    add_currency(request.mutable_want_currencies(), "coin", 5);
    pb::Offer offer;
    ASSERT_TRUE(inventory_->OfferTrade(&context, request, &offer).ok());
    auto listed = [&](const auth::Session& who, pb::OfferDirection direction) {
      grpc::ClientContext list_context;
      bearer(list_context, who.access_token());
      pb::ListOffersRequest list;
      list.set_direction(direction);
      pb::ListOffersResponse response;
      EXPECT_TRUE(inventory_->ListOffers(&list_context, list, &response).ok());
      return response;
    };
    pb::ListOffersResponse incoming = listed(bob, pb::OFFER_DIRECTION_INCOMING);
    ASSERT_EQ(incoming.offers_size(), 1);
    EXPECT_EQ(incoming.offers(0).offer_id(), offer.offer_id());
    EXPECT_EQ(incoming.offers(0).state(), pb::OFFER_STATE_OPEN);
    EXPECT_EQ(listed(alice, pb::OFFER_DIRECTION_OUTGOING).offers_size(), 1);
    EXPECT_EQ(listed(alice, pb::OFFER_DIRECTION_INCOMING).offers_size(), 0);
    {
      grpc::ClientContext cancel_context;  // only the sender may withdraw it
      bearer(cancel_context, bob.access_token());
      pb::OfferActionRequest cancel;
      cancel.set_idempotency_key("not-mine");
      cancel.set_offer_id(offer.offer_id());
      pb::Offer cancelled;
      EXPECT_EQ(inventory_->CancelOffer(&cancel_context, cancel, &cancelled).error_code(),
                grpc::StatusCode::PERMISSION_DENIED);
    }
    grpc::ClientContext decline_context;
    bearer(decline_context, bob.access_token());
    pb::OfferActionRequest decline;
    decline.set_idempotency_key("no-thanks");
    decline.set_offer_id(offer.offer_id());
    pb::Offer declined;
    ASSERT_TRUE(inventory_->DeclineOffer(&decline_context, decline, &declined).ok());
    EXPECT_EQ(declined.state(), pb::OFFER_STATE_DECLINED);
    EXPECT_EQ(listed(bob, pb::OFFER_DIRECTION_UNSPECIFIED).offers_size(), 0);
    grpc::ClientContext accept_context;
    bearer(accept_context, bob.access_token());
    pb::AcceptOfferRequest accept;
    accept.set_idempotency_key("too-late");
    accept.set_offer_id(offer.offer_id());
    pb::AcceptOfferResponse accepted;
    const grpc::Status late = inventory_->AcceptOffer(&accept_context, accept, &accepted);
    EXPECT_EQ(late.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(late.error_message().find("is declined, not open"), std::string::npos) << late.error_message();
  }
  // Consumption: only consumable items.
  {
    ASSERT_TRUE(grant(admin.access_token(),
                      [&] {
                        pb::GrantRequest r;
                        r.set_idempotency_key(id("potions"));
                        r.set_player_id(alice_id);
                        add_item(r.mutable_items(), "potion", 3);
                        return r;
                      }())
                    .ok());
    grpc::ClientContext context;
    bearer(context, alice.access_token());
    pb::ConsumeRequest request;
    request.set_idempotency_key("drink");
    add_item(request.mutable_items(), "potion", 2);
    pb::ChangeResponse response;
    status = inventory_->Consume(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(count_of(response.inventory(), "potion"), 1);
    grpc::ClientContext gem_context;
    bearer(gem_context, alice.access_token());
    request.set_idempotency_key("eat-gem");
    request.clear_items();
    add_item(request.mutable_items(), "gem", 1);
    status = inventory_->Consume(&gem_context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(status.error_message().find("is not consumable"), std::string::npos) << status.error_message();
  }
  EXPECT_EQ(verify(alice_id).mismatches_size(), 0);
  EXPECT_EQ(verify(bob.account().id()).mismatches_size(), 0);
}

TEST_P(InventoryThroughTheHost, AReplayGivesTheFirstAnswerAndOneLedgerEntryAlsoAfterARestart) {
  publish_standard_catalog();
  const auth::Session alice = sign_up("alice");
  const std::string alice_id = alice.account().id();
  const pb::GrantRequest request = grant_request(alice_id, "once", 7, 70);
  pb::ChangeResponse first, again;
  ASSERT_TRUE(grant(kOperatorToken, request, &first).ok());
  ASSERT_TRUE(grant(kOperatorToken, request, &again).ok());
  EXPECT_EQ(first.SerializeAsString(), again.SerializeAsString());
  // Concurrent duplicates: one change, every answer the first.
  {
    std::vector<std::thread> threads;
    std::atomic<int> same{0};
    const pb::GrantRequest racing = grant_request(alice_id, "race", 1, 0);
    pb::ChangeResponse reference;
    std::mutex mu;
    std::vector<std::string> answers;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        pb::ChangeResponse r;
        const grpc::Status s = grant(kOperatorToken, racing, &r);
        EXPECT_TRUE(s.ok()) << s.error_message();
        std::lock_guard lock(mu);
        answers.push_back(r.SerializeAsString());
      });
    }
    for (auto& t : threads) t.join();
    for (const auto& a : answers) same += a == answers.front() ? 1 : 0;
    EXPECT_EQ(same.load(), 8);
  }
  EXPECT_EQ(count_of(inventory_of(alice_id), "gem"), 8);
  EXPECT_EQ(ledger_of(alice_id).size(), 2u);

  pb::GrantRequest changed = request;
  changed.mutable_items(0)->set_count(8);
  grpc::Status status = grant(kOperatorToken, changed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_NE(status.error_message().find("was already used for a different request"), std::string::npos)
      << status.error_message();

  start();  // a restart: the same store, new process
  pb::ChangeResponse after_restart;
  status = grant(kOperatorToken, request, &after_restart);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(after_restart.SerializeAsString(), first.SerializeAsString());
  const std::vector<pb::LedgerEntry> ledger = ledger_of(alice_id);
  ASSERT_EQ(ledger.size(), 2u);
  EXPECT_EQ(ledger[0].idempotency_key(), id("once"));
  EXPECT_EQ(count_of(inventory_of(alice_id), "gem"), 8);

  if (GetParam() == "postgresql") {
    // A second host on the same store: a replay there gives the first host's answer, and of
    // concurrent duplicates sent to both hosts one change is made.
    HostProcess other(config_of());
    auto other_inventory = pb::Inventory::NewStub(other.channel());
    auto grant_on = [&](pb::Inventory::Stub& stub, const pb::GrantRequest& r, pb::ChangeResponse* out) {
      grpc::ClientContext context;
      bearer(context, kOperatorToken);
      return stub.Grant(&context, r, out);
    };
    pb::ChangeResponse elsewhere;
    status = grant_on(*other_inventory, request, &elsewhere);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(elsewhere.SerializeAsString(), first.SerializeAsString());
    const pb::GrantRequest both = grant_request(alice_id, "both-hosts", 1, 0);
    std::vector<std::string> answers(8);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < answers.size(); ++i) {
      threads.emplace_back([&, i] {
        pb::ChangeResponse r;
        const grpc::Status s = grant_on(i % 2 == 0 ? *inventory_ : *other_inventory, both, &r);
        EXPECT_TRUE(s.ok()) << s.error_message();
        answers[i] = r.SerializeAsString();
      });
    }
    for (auto& t : threads) t.join();
    for (const std::string& a : answers) EXPECT_EQ(a, answers.front());
    EXPECT_EQ(count_of(inventory_of(alice_id), "gem"), 9);
    EXPECT_EQ(ledger_of(alice_id).size(), 3u);
  }
}

TEST_P(InventoryThroughTheHost, BadInputNamesWhatIsWrongAndChangesNothing) {
  publish_standard_catalog();
  const auth::Session alice = sign_up("alice");
  const std::string alice_id = alice.account().id();
  ASSERT_TRUE(grant(kOperatorToken, grant_request(alice_id, "seed", 10, 10)).ok());
  const std::string before = inventory_of(alice_id).SerializeAsString();

  struct Case {
    std::function<void(pb::GrantRequest&)> edit;
    grpc::StatusCode code;
    std::string names;
  };
  const std::vector<Case> cases = {
      {[&](pb::GrantRequest& r) { add_item(r.mutable_items(), "nope", 1); },
       grpc::StatusCode::INVALID_ARGUMENT, "items[0].item_id '" + id("nope") + "' is not in the catalog"},
      {[&](pb::GrantRequest& r) { add_item(r.mutable_items(), "gem", 0); },
       grpc::StatusCode::INVALID_ARGUMENT, "items[0].count is 0; it must be greater than 0"},
      {[&](pb::GrantRequest& r) { add_item(r.mutable_items(), "gem", -1); },
       grpc::StatusCode::INVALID_ARGUMENT, "items[0].count is -1"},
      {[&](pb::GrantRequest& r) { add_item(r.mutable_items(), "gem", kInt64Min); },
       grpc::StatusCode::INVALID_ARGUMENT, "items[0].count is -9223372036854775808"},
      {[&](pb::GrantRequest& r) { add_item(r.mutable_items(), "gem", kInt64Max); },
       grpc::StatusCode::INVALID_ARGUMENT, "items[0].count is 9223372036854775807; the most is"},
      {[&](pb::GrantRequest& r) { add_currency(r.mutable_currencies(), "coin", -5); },
       grpc::StatusCode::INVALID_ARGUMENT, "currencies[0].amount is -5"},
      {[&](pb::GrantRequest& r) { add_currency(r.mutable_currencies(), "coin", 1'000'000'000); },
       grpc::StatusCode::FAILED_PRECONDITION, "max_balance is 1000000000"},
      {[&](pb::GrantRequest& r) {
         add_item(r.mutable_items(), "gem", 1);
         r.clear_idempotency_key();
       },
       grpc::StatusCode::INVALID_ARGUMENT, "idempotency_key is required"},
      {[&](pb::GrantRequest& r) {
         add_item(r.mutable_items(), "gem", 1);
         r.set_idempotency_key(std::string(129, 'k'));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "idempotency_key has 129 bytes; the most is 128"},
      {[&](pb::GrantRequest& r) {
         for (int i = 0; i < 65; ++i) add_item(r.mutable_items(), "gem" + std::to_string(i), 1);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "65 item, currency and bundle lines; the most is 64"},
      {[&](pb::GrantRequest& r) { r.set_player_id("bad/player"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "player_id 'bad/player' may hold only"},
      {[&](pb::GrantRequest& r) { r.add_bundle_ids(id("no-bundle")); }, grpc::StatusCode::INVALID_ARGUMENT,
       "bundle_ids[0] '" + id("no-bundle") + "' is not in the catalog"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    pb::GrantRequest request;
    request.set_idempotency_key("bad-" + std::to_string(i));
    request.set_player_id(alice_id);
    cases[i].edit(request);
    const grpc::Status status = grant(kOperatorToken, request);
    EXPECT_EQ(status.error_code(), cases[i].code) << i << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(cases[i].names), std::string::npos)
        << i << ": " << status.error_message() << "\nexpected: " << cases[i].names;
  }
  // A player's own calls: consume more than held, a transfer of a medal (not tradable), to themself.
  {
    grpc::ClientContext context;
    bearer(context, alice.access_token());
    pb::ConsumeRequest request;
    request.set_idempotency_key("c");
    add_item(request.mutable_items(), "gem", kInt64Max);
    pb::ChangeResponse response;
    const grpc::Status status = inventory_->Consume(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("items[0].count is 9223372036854775807"), std::string::npos);
  }
  {
    grpc::ClientContext context;
    bearer(context, alice.access_token());
    pb::TransferRequest request;
    request.set_idempotency_key("t");
    request.set_to_player_id(alice_id);
    add_item(request.mutable_items(), "gem", 1);
    pb::Offer offer;
    const grpc::Status status = inventory_->Transfer(&context, request, &offer);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("to_player_id is the caller"), std::string::npos);
  }
  {
    grpc::ClientContext context;
    bearer(context, alice.access_token());
    pb::OfferTradeRequest request;
    request.set_idempotency_key("o");
    request.set_to_player_id("NoSuchAccount-01");
    add_item(request.mutable_give_items(), "gem", 11);
    pb::Offer offer;
    const grpc::Status status = inventory_->OfferTrade(&context, request, &offer);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(status.error_message().find("give_items[0]: " + alice_id + " holds 10 of"), std::string::npos)
        << status.error_message();
  }
  EXPECT_EQ(inventory_of(alice_id).SerializeAsString(), before);
  EXPECT_EQ(ledger_of(alice_id).size(), 1u);
}

TEST_P(InventoryThroughTheHost, OffersAreLimitedPerPlayerAndMinute) {
  start("max_offers_per_minute = 3\n");
  publish_standard_catalog();
  const auth::Session alice = sign_up("alice");
  ASSERT_TRUE(grant(kOperatorToken, grant_request(alice.account().id(), "seed", 10, 0)).ok());
  for (int i = 0; i < 4; ++i) {
    grpc::ClientContext context;
    bearer(context, alice.access_token());
    pb::TransferRequest request;
    request.set_idempotency_key("spam-" + std::to_string(i));
    request.set_to_player_id("NoSuchAccount-01");
    add_item(request.mutable_items(), "gem", 1);
    pb::Offer offer;
    const grpc::Status status = inventory_->Transfer(&context, request, &offer);
    if (i < 3) {
      EXPECT_TRUE(status.ok()) << status.error_message();
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_NE(status.error_message().find("more than 3 offers in the last minute"), std::string::npos)
          << status.error_message();
    }
  }
}

TEST_P(InventoryThroughTheHost, ConcurrentTransfersAndTradesAmongTwentyPlayersConserveEveryTotal) {
  publish_standard_catalog();
  constexpr int kPlayers = 20;
  constexpr int kThreads = 20;
  constexpr int kOperationsPerThread = 10;  // 200 in all
  std::vector<auth::Session> players;
  for (int p = 0; p < kPlayers; ++p) {
    players.push_back(sign_up("p" + std::to_string(p)));
    ASSERT_TRUE(grant(kOperatorToken,
                      grant_request(players.back().account().id(), "seed-" + std::to_string(p), 20, 200))
                    .ok());
  }
  std::atomic<int> accepted{0}, refused{0}, aborted{0};
  std::mutex mu;
  std::vector<std::string> unexpected;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(t));
      for (int i = 0; i < kOperationsPerThread; ++i) {
        const int from = static_cast<int>(random() % kPlayers);
        const int to = (from + 1 + static_cast<int>(random() % (kPlayers - 1))) % kPlayers;
        const std::string key = "op-" + std::to_string(t) + "-" + std::to_string(i);
        pb::OfferTradeRequest offer;
        offer.set_idempotency_key(key);
        offer.set_to_player_id(players[to].account().id());
        add_item(offer.mutable_give_items(), "gem", 1 + static_cast<int64_t>(random() % 6));
        add_currency(offer.mutable_give_currencies(), "coin", 1 + static_cast<int64_t>(random() % 40));
        const bool transfer = i % 2 == 0;
        if (!transfer)
          add_currency(offer.mutable_want_currencies(), "coin", 1 + static_cast<int64_t>(random() % 80));
        // Each offer accepted by three clients at once: exactly one may succeed.
        const grpc::Status status = offer_and_accept(players[from].access_token(), players[to].access_token(),
                                                     offer, key + "-accept", transfer, 3);
        if (status.ok()) {
          ++accepted;
        } else if (status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
          ++refused;  // a shortfall at offer or at accept: nothing moves
        } else if (status.error_code() == grpc::StatusCode::ABORTED) {
          ++aborted;
        } else {
          std::lock_guard lock(mu);
          unexpected.push_back(std::to_string(static_cast<int>(status.error_code())) + " " +
                               status.error_message());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(unexpected.empty()) << unexpected.front();
  EXPECT_GT(accepted.load(), kThreads * kOperationsPerThread / 2)
      << "refused " << refused << ", aborted " << aborted;
  int64_t gems = 0, coins = 0;
  for (const auth::Session& p : players) {
    const pb::PlayerInventory inv = inventory_of(p.account().id());
    EXPECT_GE(count_of(inv, "gem"), 0);
    EXPECT_GE(count_of(inv, "coin"), 0);
    gems += count_of(inv, "gem");
    coins += count_of(inv, "coin");
    const pb::VerifyLedgerResponse report = verify(p.account().id());
    EXPECT_EQ(report.mismatches_size(), 0) << report.DebugString();
  }
  EXPECT_EQ(gems, 20 * kPlayers);
  EXPECT_EQ(coins, 200 * kPlayers);
  // Every player in the store, a page at a time: the ledger explains every balance.
  uint32_t checked = 0;
  std::string cursor;
  do {
    grpc::ClientContext context;
    bearer(context, kOperatorToken);
    pb::VerifyLedgerRequest request;
    request.set_page_size(7);
    request.set_cursor(cursor);
    pb::VerifyLedgerResponse response;
    const grpc::Status status = inventory_->VerifyLedger(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.mismatches_size(), 0) << response.DebugString();
    checked += response.players_checked();
    cursor = response.next_cursor();
  } while (!cursor.empty());
  EXPECT_GE(checked, static_cast<uint32_t>(kPlayers));
}

TEST_P(InventoryThroughTheHost, OnlyTrustedPluginsGrantWithTheirOwnTrust) {
  publish_standard_catalog();
  const std::string player = sign_up("alice").account().id();
  auto call_as_probe = [&](const pb::GrantRequest& request) {
    grpc::ClientContext context;
    bearer(context, kOperatorToken);
    probe::CallAsPluginRequest call;
    call.set_method("/gameverse.inventory.v1.Inventory/Grant");
    call.set_request(request.SerializeAsString());
    probe::CallAsPluginResponse response;
    EXPECT_TRUE(probe_->CallAsPlugin(&context, call, &response).ok());
    return response;
  };
  probe::CallAsPluginResponse refused = call_as_probe(grant_request(player, "from-probe", 3, 0));
  EXPECT_EQ(refused.code(), static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  EXPECT_NE(refused.message().find("plugin 'inventory-probe' is not in the inventory's trusted_plugins"),
            std::string::npos)
      << refused.message();
  EXPECT_EQ(count_of(inventory_of(player), "gem"), 0);

  start("trusted_plugins = \"shop, inventory-probe\"\n");
  probe::CallAsPluginResponse granted = call_as_probe(grant_request(player, "from-probe", 3, 0));
  ASSERT_EQ(granted.code(), 0) << granted.message();
  pb::ChangeResponse response;
  ASSERT_TRUE(response.ParseFromString(granted.response()));
  EXPECT_EQ(response.entry().actor(), "plugin:inventory-probe");
  EXPECT_EQ(count_of(inventory_of(player), "gem"), 3);
}

TEST_P(InventoryThroughTheHost, ACatalogPublishIsSeenByTheInventory) {
  const std::string player = sign_up("alice").account().id();
  {
    res::PublishRequest request;
    *request.mutable_upsert()->add_items() = item("blade", 1);
    *request.mutable_upsert()->add_items() = item("old", 10);
    *request.mutable_upsert()->add_items() = item("relic", 10);
    *request.mutable_upsert()->add_currencies() = currency("coin", 1'000'000);
    ASSERT_TRUE(publish(request).ok());
  }
  pb::GrantRequest blade;
  blade.set_player_id(player);
  blade.set_idempotency_key(id("blade-1"));
  add_item(blade.mutable_items(), "blade", 1);
  add_item(blade.mutable_items(), "old", 2);
  add_item(blade.mutable_items(), "relic", 1);
  ASSERT_TRUE(grant(kOperatorToken, blade).ok());
  blade.clear_items();
  add_item(blade.mutable_items(), "blade", 1);
  blade.set_idempotency_key(id("blade-2"));
  grpc::Status status = grant(kOperatorToken, blade);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("its max_stack is 1"), std::string::npos) << status.error_message();
  {
    res::PublishRequest request;  // a larger stack
    *request.mutable_upsert()->add_items() = item("blade", 3);
    ASSERT_TRUE(publish(request).ok());
  }
  int attempt = 0;
  EXPECT_TRUE(eventually([&] {
    blade.set_idempotency_key(id("blade-try-" + std::to_string(++attempt)));
    return grant(kOperatorToken, blade).ok();
  })) << "the inventory still checks against the old catalog";

  // An item removed with a migration is converted on the holder's next read, with a ledger entry.
  {
    res::PublishRequest request;
    res::DefinitionRef* ref = request.add_remove();
    ref->set_kind(res::DEFINITION_KIND_ITEM);
    ref->set_id(id("old"));
    res::ItemMigration* m = request.add_migrations();
    m->set_from_item_id(id("old"));
    m->mutable_to_currency()->set_currency_id(id("coin"));
    m->mutable_to_currency()->set_amount(5);
    status = publish(request);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_TRUE(eventually([&] { return count_of(inventory_of(player), "old") == 0; }));
  EXPECT_EQ(count_of(inventory_of(player), "coin"), 10);
  EXPECT_EQ(ledger_of(player).back().reason(), "catalog migration");
  EXPECT_EQ(verify(player).mismatches_size(), 0);

  // A retired item someone holds cannot be removed without a migration: the resource-manager asks
  // the inventory who holds it.
  {
    res::PublishRequest request;
    res::ItemDefinition retired = item("relic", 10);
    retired.set_retired(true);
    *request.mutable_upsert()->add_items() = retired;
    ASSERT_TRUE(publish(request).ok());
  }
  res::PublishRequest removal;
  res::DefinitionRef* ref = removal.add_remove();
  ref->set_kind(res::DEFINITION_KIND_ITEM);
  ref->set_id(id("relic"));
  // Refused first for as long as other hosts may not know of the retirement (2 × the catalog's
  // refresh_interval_ms), then because someone holds it.
  ASSERT_TRUE(eventually([&] {
    status = publish(removal);
    return status.error_message().find("are still held by players") != std::string::npos;
  })) << status.error_message();
  EXPECT_NE(status.error_message().find(id("relic")), std::string::npos) << status.error_message();
  {
    grpc::ClientContext context;
    bearer(context, kOperatorToken);
    pb::RevokeRequest request;
    request.set_idempotency_key(id("take-relic"));
    request.set_player_id(player);
    add_item(request.mutable_items(), "relic", 1);
    pb::ChangeResponse response;
    status = inventory_->Revoke(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  status = publish(removal);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_P(InventoryThroughTheHost, WithoutTheCatalogGrantsFailUnavailable) {
  start("", false);
  const std::string player = sign_up("alice").account().id();
  const grpc::Status status = grant(kOperatorToken, grant_request(player, "g", 1, 0));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(status.error_message().find("the resource-manager plugin is not loaded"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(ledger_of(player).size(), 0u);
}

TEST_P(InventoryThroughTheHost, AReloadUnderLoadFailsNoCallAndLosesNothing) {
  publish_standard_catalog();
  const auth::Session alice = sign_up("alice");
  const auth::Session bob = sign_up("bob");
  ASSERT_TRUE(grant(kOperatorToken, grant_request(alice.account().id(), "seed", 1000, 0)).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> granted{0}, transferred{0};
  std::mutex mu;
  std::vector<std::string> failures;
  auto fail = [&](const grpc::Status& s) {
    std::lock_guard lock(mu);
    failures.push_back(s.error_message());
  };
  // ABORTED (a change that met concurrent changes to the same inventory on every attempt) is
  // retried with the same key, as a client is told to: what must never happen is a failure of
  // another kind, or a change made twice.
  auto retried = [](const std::function<grpc::Status()>& call) {
    grpc::Status s;
    for (int attempt = 0; attempt < 5; ++attempt) {
      s = call();
      if (s.error_code() != grpc::StatusCode::ABORTED) break;
    }
    return s;
  };
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (int i = 0; !stop; ++i) {
      const grpc::Status s = retried([&] {
        return grant(kOperatorToken, grant_request(bob.account().id(), "load-" + std::to_string(i), 0, 1));
      });
      s.ok() ? ++granted : (fail(s), 0);
    }
  });
  threads.emplace_back([&] {
    for (int i = 0; !stop && i < 900; ++i) {
      pb::OfferTradeRequest offer;
      offer.set_idempotency_key("move-" + std::to_string(i));
      offer.set_to_player_id(bob.account().id());
      add_item(offer.mutable_give_items(), "gem", 1);
      const grpc::Status s = retried([&] {
        return offer_and_accept(alice.access_token(), bob.access_token(), offer,
                                "accept-" + std::to_string(i), true);
      });
      s.ok() ? ++transferred : (fail(s), 0);
    }
  });
  ASSERT_TRUE(eventually([&] { return granted > 10 && transferred > 5; }, std::chrono::seconds(60)));
  for (int generation = 2; generation <= 3; ++generation) {
    auto admin = gameverse::host::v1::PluginAdmin::NewStub(host_->channel());
    grpc::ClientContext context;
    bearer(context, kOperatorToken);
    gameverse::host::v1::ReloadPluginRequest request;
    request.set_name("inventory");
    request.set_force(true);
    gameverse::host::v1::OperationResult result;
    const grpc::Status status = admin->ReloadPlugin(&context, request, &result);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(result.generation(), static_cast<uint64_t>(generation));
    const int at_reload = granted;
    EXPECT_TRUE(eventually([&] { return granted > at_reload + 10; }, std::chrono::seconds(60)));
  }
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " calls failed, the first: " << failures.front();
  const pb::PlayerInventory bob_now = inventory_of(bob.account().id());
  EXPECT_EQ(count_of(bob_now, "coin"), granted.load());
  EXPECT_EQ(count_of(bob_now, "gem"), transferred.load());
  EXPECT_EQ(count_of(inventory_of(alice.account().id()), "gem"), 1000 - transferred.load());
  EXPECT_EQ(ledger_of(bob.account().id()).size(), static_cast<size_t>(granted + transferred));
  EXPECT_EQ(verify(bob.account().id()).mismatches_size(), 0);
}

TEST_P(InventoryThroughTheHost, TheProbeServesOnlyAdminsAndForwardsOnlyTheInventoryMethodsItLists) {
  start("trusted_plugins = \"inventory-probe\"\n");
  publish_standard_catalog();
  const auth::Session mallory = sign_up("mallory");  // no role
  auto call_as_probe = [&](const std::string& token, const std::string& method, const std::string& bytes,
                           probe::CallAsPluginResponse* response) {
    grpc::ClientContext context;
    bearer(context, token);
    probe::CallAsPluginRequest call;
    call.set_method(method);
    call.set_request(bytes);
    return probe_->CallAsPlugin(&context, call, response);
  };
  probe::CallAsPluginResponse response;
  const grpc::Status by_player = call_as_probe(
      mallory.access_token(), "/gameverse.inventory.v1.Inventory/Grant",
      grant_request(mallory.account().id(), "self-grant", 0, 999).SerializeAsString(), &response);
  EXPECT_EQ(by_player.error_code(), grpc::StatusCode::PERMISSION_DENIED) << by_player.error_message();
  EXPECT_EQ(count_of(inventory_of(mallory.account().id()), "coin"), 0);
  {
    grpc::ClientContext context;
    bearer(context, mallory.access_token());
    probe::RawBatchRequest request;
    request.set_shape(probe::SHAPE_GRANT);
    request.set_key(id("raw"));
    request.set_player_a(mallory.account().id());
    probe::RawBatchResponse raw;
    EXPECT_EQ(probe_->RawBatch(&context, request, &raw).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // Even the operator cannot reach another method through the probe's trust.
  res::PublishRequest publish_request;
  *publish_request.mutable_upsert()->add_currencies() = currency("coin", 1'000'000'000'000'000);
  const grpc::Status forwarded = call_as_probe(kOperatorToken, "/gameverse.resources.v1.Resources/Publish",
                                               publish_request.SerializeAsString(), &response);
  EXPECT_EQ(forwarded.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(forwarded.error_message().find("forwards only"), std::string::npos) << forwarded.error_message();
}

TEST_P(InventoryThroughTheHost, AReplayOfAnOfferIsAnsweredEvenWhenTheRateLimitIsReached) {
  start("max_offers_per_minute = 1\n");
  publish_standard_catalog();
  const auth::Session alice = sign_up("alice");
  const auth::Session bob = sign_up("bob");
  ASSERT_TRUE(grant(kOperatorToken, grant_request(alice.account().id(), "seed", 10, 0)).ok());
  auto transfer = [&](const std::string& key, pb::Offer* offer) {
    grpc::ClientContext context;
    bearer(context, alice.access_token());
    pb::TransferRequest request;
    request.set_idempotency_key(key);
    request.set_to_player_id(bob.account().id());
    add_item(request.mutable_items(), "gem", 1);
    return inventory_->Transfer(&context, request, offer);
  };
  pb::Offer first, again, other;
  ASSERT_TRUE(transfer("once", &first).ok());
  const grpc::Status replayed = transfer("once", &again);
  EXPECT_TRUE(replayed.ok()) << replayed.error_message();
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(transfer("another", &other).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_P(InventoryThroughTheHost, AMigrationThatWouldPassMaxBalanceLeavesTheItemsFrozenAndMintsNothing) {
  publish_standard_catalog();  // gem: max_stack 10^6; coin: max_balance 10^9
  const std::string alice = sign_up("alice").account().id();
  // The catalog accepts the migration (a full stack of gems makes exactly max_balance coins); the
  // coin alice already holds is what would pass the limit.
  ASSERT_TRUE(grant(kOperatorToken, grant_request(alice, "seed", 1'000'000, 1)).ok());
  res::PublishRequest request;
  res::DefinitionRef* ref = request.add_remove();
  ref->set_kind(res::DEFINITION_KIND_ITEM);
  ref->set_id(id("gem"));
  res::ItemMigration* m = request.add_migrations();
  m->set_from_item_id(id("gem"));
  m->mutable_to_currency()->set_currency_id(id("coin"));
  m->mutable_to_currency()->set_amount(1'000);
  const grpc::Status published = publish(request);
  ASSERT_TRUE(published.ok()) << published.error_message();
  pb::PlayerInventory seen;
  EXPECT_TRUE(eventually([&] {
    seen = inventory_of(alice);
    return seen.items_size() == 1 && seen.items(0).frozen();
  })) << seen.ShortDebugString();
  EXPECT_EQ(count_of(seen, "gem"), 1'000'000);
  EXPECT_EQ(count_of(seen, "coin"), 1);
  ASSERT_EQ(seen.items_size(), 1);
  EXPECT_NE(seen.items(0).frozen_reason().find("max_balance of 1000000000"), std::string::npos)
      << seen.items(0).frozen_reason();
  EXPECT_EQ(ledger_of(alice).size(), 1u);
  EXPECT_EQ(verify(alice).mismatches_size(), 0);
}

TEST_P(InventoryThroughTheHost, OffersGoOnlyToAccountIds) {
  publish_standard_catalog();
  const auth::Session alice = sign_up("alice");
  ASSERT_TRUE(grant(kOperatorToken, grant_request(alice.account().id(), "seed", 10, 0)).ok());
  grpc::ClientContext context;
  bearer(context, alice.access_token());
  pb::TransferRequest request;
  request.set_idempotency_key("to-nobody");
  request.set_to_player_id("nobody-at-all");
  add_item(request.mutable_items(), "gem", 1);
  pb::Offer offer;
  const grpc::Status status = inventory_->Transfer(&context, request, &offer);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("to_player_id 'nobody-at-all' is not a player id"), std::string::npos)
      << status.error_message();
}

TEST_P(InventoryThroughTheHost, OfOneOffersConcurrentAcceptsAndACancelExactlyOneWins) {
  publish_standard_catalog();
  const auth::Session alice = sign_up("alice");
  const auth::Session bob = sign_up("bob");
  ASSERT_TRUE(grant(kOperatorToken, grant_request(alice.account().id(), "seed", 100, 0)).ok());
  constexpr int kRounds = 15;
  int accepted_rounds = 0;
  for (int round = 0; round < kRounds; ++round) {
    pb::Offer made;
    {
      grpc::ClientContext context;
      bearer(context, alice.access_token());
      pb::TransferRequest request;
      request.set_idempotency_key("offer-" + std::to_string(round));
      request.set_to_player_id(bob.account().id());
      add_item(request.mutable_items(), "gem", 2);
      ASSERT_TRUE(inventory_->Transfer(&context, request, &made).ok());
    }
    constexpr int kAccepters = 3;
    std::atomic<int> ready{0}, accepted{0}, cancelled{0};
    std::vector<std::thread> threads;
    std::mutex mu;
    std::vector<std::string> unexpected;
    auto note = [&](const grpc::Status& s) {
      if (s.ok() || s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) return;
      std::lock_guard lock(mu);
      unexpected.push_back(std::to_string(static_cast<int>(s.error_code())) + " " + s.error_message());
    };
    for (int a = 0; a <= kAccepters; ++a) {
      threads.emplace_back([&, a] {
        grpc::ClientContext context;
        pb::OfferActionRequest action;
        pb::AcceptOfferRequest accept;
        ++ready;
        while (ready.load() <= kAccepters) std::this_thread::yield();
        if (a == kAccepters) {  // the sender cancels meanwhile
          bearer(context, alice.access_token());
          action.set_idempotency_key("cancel-" + std::to_string(round));
          action.set_offer_id(made.offer_id());
          pb::Offer out;
          const grpc::Status s = inventory_->CancelOffer(&context, action, &out);
          if (s.ok()) ++cancelled;
          note(s);
          return;
        }
        bearer(context, bob.access_token());
        accept.set_idempotency_key("accept-" + std::to_string(round) + "-" + std::to_string(a));
        accept.set_offer_id(made.offer_id());
        pb::AcceptOfferResponse out;
        const grpc::Status s = inventory_->AcceptOffer(&context, accept, &out);
        if (s.ok()) ++accepted;
        note(s);
      });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_TRUE(unexpected.empty()) << unexpected.front();
    EXPECT_EQ(accepted.load() + cancelled.load(), 1) << "round " << round << ": accepted " << accepted.load()
                                                     << " times, cancelled " << cancelled.load() << " times";
    accepted_rounds += accepted.load();
  }
  EXPECT_EQ(count_of(inventory_of(bob.account().id()), "gem"), 2 * accepted_rounds);
  EXPECT_EQ(count_of(inventory_of(alice.account().id()), "gem"), 100 - 2 * accepted_rounds);
  EXPECT_EQ(verify(alice.account().id()).mismatches_size(), 0);
  EXPECT_EQ(verify(bob.account().id()).mismatches_size(), 0);
}

TEST_P(InventoryThroughTheHost, ConcurrentReplaysOfOneKeyChangeOnceAndGetOneAnswer) {
  publish_standard_catalog();
  const std::string alice = sign_up("alice").account().id();
  const pb::GrantRequest request = grant_request(alice, "replayed", 3, 30);
  constexpr int kClients = 8;
  std::vector<std::string> answers(kClients);
  std::vector<grpc::Status> statuses(kClients);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      pb::ChangeResponse response;
      ++ready;
      while (ready.load() < kClients) std::this_thread::yield();
      statuses[static_cast<size_t>(c)] = grant(kOperatorToken, request, &response);
      answers[static_cast<size_t>(c)] = response.SerializeAsString();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) {
    EXPECT_TRUE(statuses[static_cast<size_t>(c)].ok()) << statuses[static_cast<size_t>(c)].error_message();
    EXPECT_EQ(answers[static_cast<size_t>(c)], answers[0]);
  }
  EXPECT_EQ(count_of(inventory_of(alice), "gem"), 3);
  EXPECT_EQ(count_of(inventory_of(alice), "coin"), 30);
  EXPECT_EQ(ledger_of(alice).size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Stores, InventoryThroughTheHost, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
