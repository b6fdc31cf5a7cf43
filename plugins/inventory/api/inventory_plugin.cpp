// gameverse.inventory.v1.Inventory: maps the protobuf API onto the inventory domain. The caller
// comes from the host's gate (the call's principal) or, for plugins calling with their own trust
// (CallContext::plugin_with_own_trust), from `trusted_plugins`.
#include <gameverse/sdk/domain_error.hpp>
#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <mutex>
#include <random>

#include "domain/inventory_service.hpp"
#include "gameverse/inventory/v1/inventory.pb.h"
#include "infrastructure/resource_catalog.hpp"
#include "infrastructure/store_repository.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::inventory::v1;
namespace inv = gameverse::inventory;
using inv::InventoryError;

using sdk::answer;
using sdk::now_unix_ms;

// Newest first when listed by key: the time counts down, random digits keep ids apart.
std::string new_offer_id() {
  thread_local std::mt19937_64 random(std::random_device{}());
  char id[40];
  std::snprintf(id, sizeof id, "%013lld-%016llx", static_cast<long long>(9'999'999'999'999 - now_unix_ms()),
                static_cast<unsigned long long>(random()));
  return id;
}

template <class Field>
inv::Amounts items_of(const Field& in) {
  inv::Amounts out;
  for (const pb::ItemAmount& a : in) out.push_back({a.item_id(), a.count()});
  return out;
}

template <class Field>
inv::Amounts currencies_of(const Field& in) {
  inv::Amounts out;
  for (const pb::CurrencyAmount& a : in) out.push_back({a.currency_id(), a.amount()});
  return out;
}

template <class Field>
void put_items(Field* out, const inv::Amounts& amounts) {
  for (const inv::Amount& a : amounts) {
    pb::ItemAmount* m = out->Add();
    m->set_item_id(a.id);
    m->set_count(a.count);
  }
}

template <class Field>
void put_currencies(Field* out, const inv::Amounts& amounts) {
  for (const inv::Amount& a : amounts) {
    pb::CurrencyAmount* m = out->Add();
    m->set_currency_id(a.id);
    m->set_amount(a.count);
  }
}

void fill(pb::LedgerEntry& out, const inv::LedgerEntry& e) {
  out.set_player_id(e.player_id);
  out.set_sequence(e.sequence);
  out.set_reason(e.reason);
  out.set_actor(e.actor);
  out.set_idempotency_key(e.idempotency_key);
  put_items(out.mutable_item_deltas(), e.item_deltas);
  put_currencies(out.mutable_currency_deltas(), e.currency_deltas);
  put_items(out.mutable_resulting_items(), e.resulting_items);
  put_currencies(out.mutable_resulting_currencies(), e.resulting_currencies);
  out.set_created_unix_ms(e.created_unix_ms);
  out.set_offer_id(e.offer_id);
  out.set_counterparty(e.counterparty);
  out.set_catalog_version(e.catalog_version);
}

void fill(pb::PlayerInventory& out, const inv::Outcome& o) {
  out.set_player_id(o.player_id);
  for (const auto& [id, count] : o.holdings.items) {
    pb::ItemHolding* h = out.add_items();
    h->set_item_id(id);
    h->set_count(count);
    if (auto frozen = o.frozen.find(id); frozen != o.frozen.end()) {
      h->set_frozen(true);
      h->set_frozen_reason(frozen->second);
    }
  }
  for (const auto& [id, amount] : o.holdings.currencies) {
    pb::CurrencyAmount* c = out.add_currencies();
    c->set_currency_id(id);
    c->set_amount(amount);
  }
  out.set_ledger_sequence(o.holdings.sequence);
  out.set_catalog_version(o.catalog_version);
}

void fill(pb::Offer& out, const inv::Offer& o) {
  out.set_offer_id(o.id);
  out.set_from_player_id(o.from_player_id);
  out.set_to_player_id(o.to_player_id);
  put_items(out.mutable_give_items(), o.give_items);
  put_currencies(out.mutable_give_currencies(), o.give_currencies);
  put_items(out.mutable_want_items(), o.want_items);
  put_currencies(out.mutable_want_currencies(), o.want_currencies);
  out.set_created_unix_ms(o.created_unix_ms);
  out.set_expires_unix_ms(o.expires_unix_ms);
  out.set_state(static_cast<pb::OfferState>(o.state));
  out.set_closed_unix_ms(o.closed_unix_ms);
}

std::string render_change(const inv::Outcome& o) {
  pb::ChangeResponse response;
  if (o.entry) fill(*response.mutable_entry(), *o.entry);
  fill(*response.mutable_inventory(), o);
  return response.SerializeAsString();
}

std::string render_offer(const inv::Outcome& o) {
  pb::Offer response;
  if (o.offer) fill(response, *o.offer);
  return response.SerializeAsString();
}

std::string render_accept(const inv::Outcome& o) {
  pb::AcceptOfferResponse response;
  if (o.offer) fill(*response.mutable_offer(), *o.offer);
  if (o.entry) fill(*response.mutable_entry(), *o.entry);
  fill(*response.mutable_inventory(), o);
  return response.SerializeAsString();
}

template <class Message>
void parse_into(Message& out, const std::string& bytes) {
  if (!out.ParseFromString(bytes)) {
    throw InventoryError(InventoryError::Kind::kDataLoss,
                         "a stored answer does not parse as " + out.GetTypeName());
  }
}

// The serialized request without anything that varies between identical retries.
template <class Request>
inv::ChangeRequest change_request(const char* method, const Request& request) {
  return {method, request.idempotency_key(), request.SerializeAsString(), nullptr};
}

inv::Limits limits_of(const sdk::Host& host) {
  inv::Limits limits;
  limits.max_lines = static_cast<size_t>(host.config_int("max_lines_per_request"));
  limits.max_distinct_items = static_cast<size_t>(host.config_int("max_distinct_items"));
  limits.default_offer_ttl_s = host.config_int("default_offer_ttl_s");
  limits.max_offer_ttl_s = host.config_int("max_offer_ttl_s");
  limits.max_open_offers = static_cast<size_t>(host.config_int("max_open_offers"));
  limits.max_conflict_retries = static_cast<int>(host.config_int("max_conflict_retries"));
  return limits;
}

// Offers go to accounts only: the auth plugin's ids are 12 random bytes as base64url (16 characters).
bool is_account_id(const std::string& id) {
  return id.size() == 16 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-';
         });
}

// The limits, refused at load with the key at fault when they do not fit together.
inv::Limits checked_limits_of(const sdk::Host& host) {
  inv::Limits limits = limits_of(host);
  try {
    inv::check_limits(limits);
  } catch (const InventoryError& e) {
    throw sdk::Error(sdk::StatusCode::kInvalidArgument, e.what());
  }
  return limits;
}

class InventoryPlugin final : public sdk::Plugin {
 public:
  explicit InventoryPlugin(sdk::InitContext& init)
      : host_(init.host),
        cache_(init.host.cache()),
        max_offers_per_minute_(init.host.config_int("max_offers_per_minute")),
        repository_(init.host.store()),
        catalog_(init.host, std::chrono::milliseconds(init.host.config_int("catalog_timeout_ms"))),
        service_(repository_, catalog_, checked_limits_of(init.host), now_unix_ms, new_offer_id),
        trusted_(init.host.config_string("trusted_plugins")),
        conflicts_(init.host.counter("gameverse_inventory_conflicts_total",
                                     "Changes that met a concurrent change to the same inventory or offer: "
                                     "retried, or given up with ABORTED",
                                     {"outcome"})),
        migrations_held_back_(init.host.counter(
            "gameverse_inventory_migrations_held_back_total",
            "Holdings of removed items left frozen because their catalog migration would pass a limit "
            "(max_stack, max_balance, max_distinct_items, int64) or names an undefined target; counted "
            "each time one is tried")) {
    const auto every = std::chrono::milliseconds(init.host.config_int("catalog_check_interval_ms"));
    catalog_check_ = init.host.start_timer(
        every, every, [this] { catalog_.check_version(); }, sdk::Run::kBlocking);
    retention_.replay_window_ms = init.host.config_int("replay_window_days") * 24 * 3600 * 1000;
    retention_.closed_offer_retention_ms =
        init.host.config_int("closed_offer_retention_days") * 24 * 3600 * 1000;
    retention_.page_size = static_cast<uint32_t>(init.host.config_int("sweep_page_size"));
    const auto sweep_every = std::chrono::milliseconds(init.host.config_int("sweep_interval_ms"));
    sweep_ = init.host.start_timer(
        sweep_every, sweep_every, [this] { sweep(); }, sdk::Run::kBlocking);
    service_.recipients_must(is_account_id, "an account id: 16 characters of A-Z a-z 0-9 _ -");
    service_.on_conflict([this](bool gave_up) { conflicts_.record(1, {gave_up ? "aborted" : "retried"}); });
    service_.on_migration_held_back(
        [this](size_t items) { migrations_held_back_.record_values(static_cast<double>(items), {}); });
    published_ = init.host.subscribe(inv::ResourceCatalog::kPublishedTopic,
                                     [this](std::string_view, std::string_view payload) {
                                       if (auto v = inv::ResourceCatalog::version_of_announcement(payload)) {
                                         catalog_.announced(*v);
                                       }
                                     });
  }

  // Every method waits on the store (and the catalog), so every one runs on the host's pool.
  static void describe(sdk::PluginBuilder<InventoryPlugin>& b) {
    const std::string admin = sdk::role("admin");
    b.service("gameverse.inventory.v1.Inventory")
        .blocking("GetInventory", &InventoryPlugin::get_inventory)
        .blocking("Grant", &InventoryPlugin::grant, admin)
        .blocking("Revoke", &InventoryPlugin::revoke, admin)
        .blocking("Consume", &InventoryPlugin::consume)
        .blocking("Transfer", &InventoryPlugin::transfer)
        .blocking("OfferTrade", &InventoryPlugin::offer_trade)
        .blocking("AcceptOffer", &InventoryPlugin::accept_offer)
        .blocking("DeclineOffer", &InventoryPlugin::decline_offer)
        .blocking("CancelOffer", &InventoryPlugin::cancel_offer)
        .blocking("ListOffers", &InventoryPlugin::list_offers)
        .blocking("ListLedger", &InventoryPlugin::list_ledger)
        .blocking("VerifyLedger", &InventoryPlugin::verify_ledger, admin)
        .blocking("FindHeldItems", &InventoryPlugin::find_held_items, admin);
    b.collection("players")
        .collection("ledger")
        .collection("idempotency")
        .collection("offers")
        .collection("offer_index")
        .collection("holders");
    b.config_string(
         "trusted_plugins", "",
         "Plugins that may grant and revoke with their own trust (sdk::as_plugin), comma-separated")
        .config_int("max_lines_per_request", 64, "Item, currency and bundle lines one request may carry",
                    sdk::between(1, 200))
        .config_int("max_distinct_items", 500, "Different items one player may hold", sdk::between(1, 900))
        .config_int("default_offer_ttl_s", 3600,
                    "How long an offer stays open when the request does not say (at most max_offer_ttl_s)",
                    sdk::between(int64_t{1}, inv::kMostOfferTtlS))
        .config_int("max_offer_ttl_s", 7 * 24 * 3600, "The longest an offer may stay open",
                    sdk::between(int64_t{1}, inv::kMostOfferTtlS))
        .config_int("max_open_offers", 50, "Open offers one player may have sent", sdk::between(1, 1000))
        .config_int("max_offers_per_minute", 60, "Offers (transfers and trades) one player may make a minute",
                    sdk::between(1, 1000000))
        .config_int("max_conflict_retries", 8,
                    "Attempts at a change that meets concurrent changes before it fails with ABORTED",
                    sdk::between(1, 100))
        .config_int(
            "replay_window_days", 7,
            "How long a change's idempotency record is kept: a replay within it gets the first answer, "
            "after it is a new change",
            sdk::between(1, 3650))
        .config_int(
            "closed_offer_retention_days", 30,
            "How long accepted, declined, cancelled and expired offers are kept before they are deleted",
            sdk::between(1, 3650))
        .config_int("sweep_interval_ms", 60000,
                    "How often a page of idempotency records and one of offers are swept",
                    sdk::between(1000, 3600000))
        .config_int("sweep_page_size", 500, "Records of each kind one sweep reads", sdk::between(1, 5000))
        .config_int("catalog_timeout_ms", 5000, "How long a catalog lookup may take", sdk::between(10, 60000))
        .config_int("catalog_check_interval_ms", 5000,
                    "How often the catalog's version is checked, in case a publish announcement was missed",
                    sdk::between(100, 3600000));
  }

  sdk::Status get_inventory(sdk::CallContext& context, const pb::GetInventoryRequest& request,
                            pb::PlayerInventory& response) {
    return answer([&] {
      const inv::Caller caller = caller_of(context);
      const std::string player = request.player_id().empty() ? caller.player_id : request.player_id();
      fill(response, service_.get(caller, player));
    });
  }

  sdk::Status grant(sdk::CallContext& context, const pb::GrantRequest& request,
                    pb::ChangeResponse& response) {
    return answer([&] {
      const std::vector<std::string> bundles(request.bundle_ids().begin(), request.bundle_ids().end());
      parse_into(response, service_.grant(caller_of(context), change_request("Grant", request), render_change,
                                          request.player_id(), items_of(request.items()),
                                          currencies_of(request.currencies()), bundles, request.reason()));
    });
  }

  sdk::Status revoke(sdk::CallContext& context, const pb::RevokeRequest& request,
                     pb::ChangeResponse& response) {
    return answer([&] {
      parse_into(response, service_.revoke(caller_of(context), change_request("Revoke", request),
                                           render_change, request.player_id(), items_of(request.items()),
                                           currencies_of(request.currencies()), request.reason()));
    });
  }

  sdk::Status consume(sdk::CallContext& context, const pb::ConsumeRequest& request,
                      pb::ChangeResponse& response) {
    return answer([&] {
      parse_into(response, service_.consume(caller_of(context), change_request("Consume", request),
                                            render_change, items_of(request.items()), request.reason()));
    });
  }

  sdk::Status transfer(sdk::CallContext& context, const pb::TransferRequest& request, pb::Offer& response) {
    return answer([&] {
      inv::ChangeRequest change = change_request("Transfer", request);
      change.admit = [&] { limit_offers(context); };
      parse_into(response, service_.offer(caller_of(context), change, render_offer, request.to_player_id(),
                                          items_of(request.items()), currencies_of(request.currencies()), {},
                                          {}, request.expires_in_s(), true));
    });
  }

  sdk::Status offer_trade(sdk::CallContext& context, const pb::OfferTradeRequest& request,
                          pb::Offer& response) {
    return answer([&] {
      inv::ChangeRequest change = change_request("OfferTrade", request);
      change.admit = [&] { limit_offers(context); };
      parse_into(response,
                 service_.offer(caller_of(context), change, render_offer, request.to_player_id(),
                                items_of(request.give_items()), currencies_of(request.give_currencies()),
                                items_of(request.want_items()), currencies_of(request.want_currencies()),
                                request.expires_in_s(), false));
    });
  }

  sdk::Status accept_offer(sdk::CallContext& context, const pb::AcceptOfferRequest& request,
                           pb::AcceptOfferResponse& response) {
    return answer([&] {
      parse_into(response, service_.accept(caller_of(context), change_request("AcceptOffer", request),
                                           render_accept, request.offer_id()));
    });
  }

  sdk::Status decline_offer(sdk::CallContext& context, const pb::OfferActionRequest& request,
                            pb::Offer& response) {
    return answer([&] {
      parse_into(response, service_.close(caller_of(context), change_request("DeclineOffer", request),
                                          render_offer, request.offer_id(), inv::OfferState::kDeclined));
    });
  }

  sdk::Status cancel_offer(sdk::CallContext& context, const pb::OfferActionRequest& request,
                           pb::Offer& response) {
    return answer([&] {
      parse_into(response, service_.close(caller_of(context), change_request("CancelOffer", request),
                                          render_offer, request.offer_id(), inv::OfferState::kCancelled));
    });
  }

  sdk::Status list_offers(sdk::CallContext& context, const pb::ListOffersRequest& request,
                          pb::ListOffersResponse& response) {
    return answer([&] {
      std::optional<bool> outgoing;
      if (request.direction() == pb::OFFER_DIRECTION_INCOMING) outgoing = false;
      if (request.direction() == pb::OFFER_DIRECTION_OUTGOING) outgoing = true;
      inv::Page<inv::Offer> page =
          service_.offers(caller_of(context), outgoing, request.cursor(), request.page_size());
      for (const inv::Offer& o : page.items) fill(*response.add_offers(), o);
      response.set_next_cursor(page.next_cursor);
    });
  }

  sdk::Status list_ledger(sdk::CallContext& context, const pb::ListLedgerRequest& request,
                          pb::ListLedgerResponse& response) {
    return answer([&] {
      const inv::Caller caller = caller_of(context);
      const std::string player = request.player_id().empty() ? caller.player_id : request.player_id();
      inv::Page<inv::LedgerEntry> page =
          service_.ledger(caller, player, request.cursor(), request.page_size());
      for (const inv::LedgerEntry& e : page.items) fill(*response.add_entries(), e);
      response.set_next_cursor(page.next_cursor);
    });
  }

  sdk::Status verify_ledger(sdk::CallContext& context, const pb::VerifyLedgerRequest& request,
                            pb::VerifyLedgerResponse& response) {
    return answer([&] {
      inv::VerifyReport report =
          service_.verify(caller_of(context), request.player_id(), request.cursor(), request.page_size(),
                          [&context] { return context.cancelled(); });
      response.set_players_checked(report.players_checked);
      response.set_entries_checked(report.entries_checked);
      for (const inv::Mismatch& m : report.mismatches) {
        pb::Mismatch* out = response.add_mismatches();
        out->set_player_id(m.player_id);
        out->set_kind(m.kind);
        out->set_id(m.id);
        out->set_held(m.held);
        out->set_derived(m.derived);
      }
      response.set_next_cursor(report.next_cursor);
    });
  }

  sdk::Status find_held_items(sdk::CallContext& context, const pb::FindHeldItemsRequest& request,
                              pb::FindHeldItemsResponse& response) {
    return answer([&] {
      const std::vector<std::string> ids(request.item_ids().begin(), request.item_ids().end());
      for (const std::string& id : service_.find_held(caller_of(context), ids))
        response.add_held_item_ids(id);
    });
  }

 private:
  // Offers cost storage without using anything up: each player makes at most
  // max_offers_per_minute (counted in the host's cache, so across hosts with Redis). Counted only
  // when the idempotency key has no first answer: a replay is never refused by it.
  void limit_offers(const sdk::CallContext& context) const {
    const std::string player = context.principal().user_id;
    if (player.empty()) return;
    const int64_t made = cache_.increment("offers-per-minute/" + player, 1, std::chrono::minutes(1));
    if (made > max_offers_per_minute_) {
      throw InventoryError(InventoryError::Kind::kResourceExhausted,
                           player + " made more than " + std::to_string(max_offers_per_minute_) +
                               " offers in the last minute (max_offers_per_minute); wait and retry");
    }
  }

  // One page of each kind on the host's pool; a failure is retried at the next tick.
  void sweep() {
    std::lock_guard lock(sweep_mu_);
    try {
      swept_.record_values(static_cast<double>(service_.sweep(sweep_cursor_, retention_)), {});
    } catch (const std::exception&) {
      // The store is unavailable now: the same page is swept at the next tick.
    }
  }

  // The signed-in caller the gate let through, or a plugin calling with its own trust (trusted
  // when trusted_plugins names it). A plugin acting for its caller is that caller.
  inv::Caller caller_of(const sdk::CallContext& context) const {
    inv::Caller caller;
    if (const std::string_view own = context.plugin_with_own_trust(); !own.empty()) {
      caller.plugin = std::string(own);
      caller.trusted_plugin = trusted_.contains(own);
      return caller;
    }
    const sdk::Principal principal = context.principal();
    if (principal.anonymous()) {
      throw InventoryError(InventoryError::Kind::kPermissionDenied,
                           "this call needs the metadata authorization: Bearer <access token>");
    }
    caller.player_id = principal.user_id;
    caller.roles = principal.roles;
    return caller;
  }

  sdk::Host host_;
  sdk::Cache cache_;
  int64_t max_offers_per_minute_;
  inv::StoreRepository repository_;
  inv::ResourceCatalog catalog_;
  inv::InventoryService service_;
  sdk::TrustedPlugins trusted_;
  sdk::Metric conflicts_;
  sdk::Metric migrations_held_back_;
  sdk::Metric swept_ =
      host_.counter("gameverse_inventory_swept_total",
                    "Idempotency records past the replay window and closed offers past their "
                    "retention, deleted");
  inv::Retention retention_;
  std::mutex sweep_mu_;
  inv::SweepCursor sweep_cursor_;
  sdk::Timer sweep_;
  sdk::Subscription published_;
  sdk::Timer catalog_check_;
};

}  // namespace

GAMEVERSE_PLUGIN(InventoryPlugin, "inventory", "1.0.0", "Player items and wallets with a ledger and trades")
