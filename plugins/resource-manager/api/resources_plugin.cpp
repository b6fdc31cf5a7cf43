// gameverse.resources.v1.Resources: the content catalog. Reads are answered from the catalog
// held in memory (swapped whole per version); Publish validates, commits one store batch and
// announces the version on pub/sub, which every host's copy (and WatchCatalog) follows.
#include <gameverse/sdk/domain_error.hpp>
#include <gameverse/sdk/plugin.hpp>

#include <chrono>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "domain/catalog.hpp"
#include "domain/catalog_service.hpp"
#include "gameverse/resources/records/v1/records.pb.h"
#include "gameverse/resources/v1/resources.pb.h"
#include "infrastructure/mapping.hpp"
#include "infrastructure/store_catalog_repository.hpp"

namespace sdk = gameverse::sdk;
namespace pb = ::gameverse::resources::v1;
namespace rec = ::gameverse::resources::records::v1;
using namespace gameverse::resources;

namespace {

constexpr const char* kCatalogTopic = "gameverse.resources.v1.catalog";
constexpr const char* kFindHeldItems = "/gameverse.inventory.v1.Inventory/FindHeldItems";
constexpr size_t kMaxLookupIds = 1000;
constexpr size_t kMaxDefinitionBytes = 3072;  // encoded
// Most refs one GetChanges answer lists; more: refetch_all.
constexpr size_t kMaxChangeRefs = 1000;
// What one entry of a repeated field costs on the wire beyond its bytes (tag and length).
constexpr size_t kEntryOverhead = 8;
constexpr uint32_t kDefaultPageSize = 500;
constexpr uint32_t kMaxPageSize = 1000;
constexpr int kCatchUpAttempts = 20;  // at a reload, 50 ms apart

using sdk::now_unix_ms;

// The canonical name of a status code, for messages.
std::string code_name(sdk::StatusCode code) {
  static constexpr const char* kNames[] = {
      "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  const auto index = static_cast<int32_t>(code);
  return index >= 0 && index < 17 ? kNames[index] : "status " + std::to_string(index);
}

sdk::Status invalid(std::string message) {
  return {sdk::StatusCode::kInvalidArgument, std::move(message)};
}

Limits limits_from(const sdk::Host& host) {
  Limits limits;
  limits.max_changes_per_publish = static_cast<size_t>(host.config_int("max_changes_per_publish"));
  limits.max_catalog_definitions = static_cast<size_t>(host.config_int("max_catalog_definitions"));
  limits.max_request_definitions = limits.max_catalog_definitions;
  limits.removal_after_retirement_ms = 2 * host.config_int("refresh_interval_ms");
  return limits;
}

template <class M>
void check_encoded_size(const M& message, const char* kind, int index, const std::string& id) {
  const size_t bytes = message.ByteSizeLong();
  if (bytes > kMaxDefinitionBytes) {
    std::string shown;  // the id as sent, short and printable
    for (char c : id.substr(0, 64)) shown += (c >= 0x20 && c < 0x7f) ? c : '?';
    throw ValidationError(ValidationError::Reason::kInvalid,
                          std::string(kind) + " '" + shown + "' (#" + std::to_string(index) + "): is " +
                              std::to_string(bytes) + " bytes encoded; at most " +
                              std::to_string(kMaxDefinitionBytes));
  }
}

PublishRequest request_of(const pb::PublishRequest& m) {
  PublishRequest r;
  if (m.has_expected_version()) r.expected_version = m.expected_version();
  r.replace_all = m.replace_all();
  const pb::Catalog& c = m.upsert();
  for (int i = 0; i < c.items_size(); ++i) {
    check_encoded_size(c.items(i), "item", i, c.items(i).id());
    r.items.push_back(to_domain(c.items(i)));
  }
  for (int i = 0; i < c.currencies_size(); ++i) {
    check_encoded_size(c.currencies(i), "currency", i, c.currencies(i).id());
    r.currencies.push_back(to_domain(c.currencies(i)));
  }
  for (int i = 0; i < c.bundles_size(); ++i) {
    check_encoded_size(c.bundles(i), "bundle", i, c.bundles(i).id());
    r.bundles.push_back(to_domain(c.bundles(i)));
  }
  for (int i = 0; i < c.assets_size(); ++i) {
    check_encoded_size(c.assets(i), "asset", i, c.assets(i).asset_id());
    r.assets.push_back(to_domain(c.assets(i)));
  }
  for (int i = 0; i < m.remove_size(); ++i)
    r.remove.push_back(to_domain(m.remove(i), static_cast<size_t>(i)));
  for (const auto& migration : m.migrations()) r.migrations.push_back(to_domain(migration));
  return r;
}

// "<version>.<kind>.<epoch: 16 hex>.<id>": where the next GetCatalog page starts (after that
// definition), in which catalog.
constexpr size_t kTokenEpochChars = 16;

std::string token_epoch(const std::string& epoch) {
  std::string out = epoch.substr(0, kTokenEpochChars);
  out.resize(kTokenEpochChars, '0');
  return out;
}

std::string page_token(uint64_t version, const std::string& epoch, const Ref& last) {
  return std::to_string(version) + "." + std::to_string(static_cast<int>(last.kind)) + "." +
         token_epoch(epoch) + "." + last.id;
}

bool parse_page_token(const std::string& token, uint64_t& version, std::string& epoch, Ref& last) {
  if (token.size() > 128) return false;
  const size_t a = token.find('.');
  const size_t b = a == std::string::npos ? a : token.find('.', a + 1);
  if (b == std::string::npos || a == 0 || a > 20 || b != a + 2) return false;
  version = 0;
  for (size_t i = 0; i < a; ++i) {
    if (token[i] < '0' || token[i] > '9') return false;
    version = version * 10 + static_cast<uint64_t>(token[i] - '0');
  }
  const char kind = token[a + 1];
  if (kind < '1' || kind > '4') return false;
  last.kind = static_cast<Kind>(kind - '0');
  if (token.size() < b + 1 + kTokenEpochChars + 1 || token[b + 1 + kTokenEpochChars] != '.') return false;
  epoch = token.substr(b + 1, kTokenEpochChars);
  last.id = token.substr(b + 2 + kTokenEpochChars);
  return valid_id(last.id, 64);
}

// A WatchCatalog stream: the versions sent only go up.
struct Watcher {
  explicit Watcher(sdk::ServerStream<pb::CatalogPublished> s) : stream(std::move(s)) {}
  sdk::ServerStream<pb::CatalogPublished> stream;
  std::string caller;       // the account it counts against; empty: the operator or a plugin
  std::string address;      // the peer address it counts against (accounts are free to make)
  bool registered = false;  // in the plugin's list (guarded by its watchers_mu_)
  std::mutex mu;
  bool any_sent = false;
  uint64_t sent = 0;
  bool ended = false;
};

class ResourcesPlugin;

class WatchSession final : public sdk::StreamSession {
 public:
  WatchSession(ResourcesPlugin& plugin, std::shared_ptr<Watcher> watcher)
      : plugin_(plugin), watcher_(std::move(watcher)) {}
  std::string detach() override;
  void on_cancel() override;

 private:
  ResourcesPlugin& plugin_;
  std::shared_ptr<Watcher> watcher_;
};

class ResourcesPlugin final : public sdk::Plugin {
 public:
  explicit ResourcesPlugin(sdk::InitContext& init)
      : host_(init.host),
        repository_(init.host.store()),
        service_(repository_, limits_from(init.host),
                 static_cast<size_t>(init.host.config_int("change_history")), now_unix_ms),
        max_answer_bytes_(static_cast<size_t>(init.host.config_int("max_answer_bytes"))),
        max_watchers_(static_cast<size_t>(init.host.config_int("max_watchers"))),
        max_watchers_per_caller_(static_cast<size_t>(init.host.config_int("max_watchers_per_caller"))),
        max_watchers_per_address_(static_cast<size_t>(init.host.config_int("max_watchers_per_address"))),
        holders_timeout_(init.host.config_int("holders_timeout_ms")),
        trusted_plugins_(init.host.config_string("trusted_plugins")),
        published_(init.host.counter("gameverse_resources_publishes_total", "Catalog publishes, by outcome",
                                     {"outcome"})),
        version_gauge_(
            init.host.gauge("gameverse_resources_catalog_version", "The catalog version this host holds")),
        watchers_gauge_(
            init.host.gauge("gameverse_resources_watchers", "WatchCatalog streams open on this host")) {
    // Subscribed before the catalog is read: a publish in between is announced to this generation.
    announcements_ = init.host.subscribe(
        kCatalogTopic, [this](std::string_view, std::string_view payload) { announced(payload); },
        sdk::Run::kBlocking);
    const auto started = std::chrono::steady_clock::now();
    service_.load();
    catch_up(init.previous_state);
    host_.info("catalog version " + std::to_string(service_.current()->catalog.version) +
               " held: " + std::to_string(service_.current()->catalog.size()) + " definitions, read in " +
               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - started)
                                  .count()) +
               " ms");
    version_gauge_.record(static_cast<double>(service_.current()->catalog.version));
    const auto every = std::chrono::milliseconds(init.host.config_int("refresh_interval_ms"));
    refresh_timer_ = init.host.start_timer(
        every, every, [this] { refresh(); }, sdk::Run::kBlocking);
  }

  ~ResourcesPlugin() override {
    refresh_timer_.cancel();
    announcements_.cancel();
    std::lock_guard lock(watchers_mu_);
    for (const auto& w : watchers_) {
      std::lock_guard watcher_lock(w->mu);
      if (!w->ended) {
        w->stream.finish(
            sdk::Status(sdk::StatusCode::kUnavailable, "the resources service stopped; watch again"));
      }
      w->ended = true;
    }
  }

  // The version this generation holds, for the next one at a hot reload: it serves nothing older.
  std::string save_state() override {
    const auto state = service_.current();
    rec::HeldCatalog held;
    held.set_version(state->catalog.version);
    held.set_epoch(state->catalog.epoch);
    return held.SerializeAsString();
  }

  static void describe(sdk::PluginBuilder<ResourcesPlugin>& b) {
    b.service("gameverse.resources.v1.Resources")
        .unary("GetCatalog", &ResourcesPlugin::get_catalog, sdk::kAuthenticated)
        .unary("GetDefinition", &ResourcesPlugin::get_definition, sdk::kAuthenticated)
        .blocking("GetChanges", &ResourcesPlugin::get_changes, sdk::kAuthenticated)
        .blocking("Publish", &ResourcesPlugin::publish, sdk::role("admin"))
        .unary("LookupDefinitions", &ResourcesPlugin::lookup, sdk::kAuthenticated)
        .server_stream_movable("WatchCatalog", &ResourcesPlugin::watch_open, &ResourcesPlugin::watch_resume,
                               sdk::kAuthenticated);
    b.collection("head").collection("definitions").collection("changes").collection("migrations");
    b.config_int("max_changes_per_publish", 400,
                 "Most definitions and migrations one publish may add, change or remove (one atomic store "
                 "batch, which the host caps at 500 writes)",
                 sdk::between(1, 498));
    b.config_int("max_catalog_definitions", 20000, "Most definitions the catalog may hold",
                 sdk::between(1, 200000));
    b.config_int("change_history", 200, "Versions whose changes GetChanges can report; older: refetch_all",
                 sdk::between(1, 10000));
    b.config_int("max_answer_bytes", 3 * 1024 * 1024,
                 "Most bytes one GetCatalog page or GetChanges answer carries; keep it below the host's "
                 "[server] max_message_bytes",
                 sdk::between(64 * 1024, 1024 * 1024 * 1024));
    b.config_int("max_watchers", 1000, "Most WatchCatalog streams open on one host", sdk::between(0, 100000));
    b.config_int("max_watchers_per_caller", 4,
                 "Most WatchCatalog streams one account may have open on one host", sdk::between(1, 1000));
    b.config_int("max_watchers_per_address", 64,
                 "Most WatchCatalog streams signed-in players may have open on one host from one network "
                 "address, whatever their accounts",
                 sdk::between(1, 100000));
    b.config_int("refresh_interval_ms", 1000,
                 "How often the head is checked, in case a pub/sub announcement was missed",
                 sdk::between(100, 3600000));
    b.config_int("holders_timeout_ms", 5000,
                 "How long to wait for the inventory's answer on who holds an item",
                 sdk::between(100, 60000));
    b.config_string(
        "trusted_plugins", "",
        "Plugins that may publish a catalog with their own trust, comma-separated (admins always may)");
  }

  sdk::Status get_catalog(sdk::CallContext&, const pb::GetCatalogRequest& request,
                          pb::GetCatalogResponse& response) {
    if (request.page_size() > kMaxPageSize) {
      return invalid("page_size is " + std::to_string(request.page_size()) + "; at most " +
                     std::to_string(kMaxPageSize));
    }
    const uint32_t page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
    const auto state = service_.current();
    const Catalog& catalog = state->catalog;
    Ref after{Kind::kItem, ""};
    bool have_after = false;
    if (!request.page_token().empty()) {
      uint64_t version = 0;
      std::string epoch;
      if (!parse_page_token(request.page_token(), version, epoch, after)) {
        return invalid("page_token is not a next_page_token of GetCatalog");
      }
      if (version != catalog.version || epoch != token_epoch(catalog.epoch)) {
        return {sdk::StatusCode::kAborted, "the catalog moved from version " + std::to_string(version) +
                                               " to " + std::to_string(catalog.version) +
                                               " while it was paged; start again from the first page"};
      }
      have_after = true;
    }
    response.set_version(catalog.version);
    response.set_epoch(catalog.epoch);
    pb::Catalog& out = *response.mutable_catalog();
    uint32_t count = 0;
    size_t bytes = 0;
    std::optional<Ref> last;
    bool more = false;
    auto take = [&](Kind kind, const auto& map, auto&& add) {
      if (more || (have_after && static_cast<int>(kind) < static_cast<int>(after.kind))) return;
      auto it = (have_after && kind == after.kind) ? map.upper_bound(after.id) : map.begin();
      for (; it != map.end(); ++it) {
        if (count == page_size || bytes + kMaxDefinitionBytes + kEntryOverhead > max_answer_bytes_) {
          more = true;
          return;
        }
        bytes += add(it->second) + kEntryOverhead;
        ++count;
        last = Ref{kind, it->first};
      }
    };
    take(Kind::kItem, catalog.items, [&](const Item& d) {
      auto* m = out.add_items();
      to_proto(d, *m);
      return m->ByteSizeLong();
    });
    take(Kind::kCurrency, catalog.currencies, [&](const Currency& d) {
      auto* m = out.add_currencies();
      to_proto(d, *m);
      return m->ByteSizeLong();
    });
    take(Kind::kBundle, catalog.bundles, [&](const Bundle& d) {
      auto* m = out.add_bundles();
      to_proto(d, *m);
      return m->ByteSizeLong();
    });
    take(Kind::kAsset, catalog.assets, [&](const Asset& d) {
      auto* m = out.add_assets();
      to_proto(d, *m);
      return m->ByteSizeLong();
    });
    if (more && last) response.set_next_page_token(page_token(catalog.version, catalog.epoch, *last));
    return sdk::Status::ok();
  }

  sdk::Status get_definition(sdk::CallContext&, const pb::GetDefinitionRequest& request,
                             pb::GetDefinitionResponse& response) {
    if (request.kind() < pb::DEFINITION_KIND_ITEM || request.kind() > pb::DEFINITION_KIND_ASSET) {
      return invalid("kind must be ITEM, CURRENCY, BUNDLE or ASSET");
    }
    if (!valid_id(request.id(), 64)) {
      return invalid("id must be 1 to 64 bytes of letters, digits, '_', '.', ':' or '-'");
    }
    const auto state = service_.current();
    const Catalog& catalog = state->catalog;
    response.set_version(catalog.version);
    const Ref ref{static_cast<Kind>(request.kind()), request.id()};
    pb::Catalog one;
    append_definition(catalog, ref, one);
    if (one.items_size() == 1)
      response.mutable_item()->Swap(one.mutable_items(0));
    else if (one.currencies_size() == 1)
      response.mutable_currency()->Swap(one.mutable_currencies(0));
    else if (one.bundles_size() == 1)
      response.mutable_bundle()->Swap(one.mutable_bundles(0));
    else if (one.assets_size() == 1)
      response.mutable_asset()->Swap(one.mutable_assets(0));
    else {
      return {sdk::StatusCode::kNotFound, std::string(kind_name(ref.kind)) + " '" + ref.id +
                                              "' is not defined in catalog version " +
                                              std::to_string(catalog.version)};
    }
    return sdk::Status::ok();
  }

  // Blocking: it may read the store's head, and a large answer is built off the completion queue.
  sdk::Status get_changes(sdk::CallContext&, const pb::GetChangesRequest& request,
                          pb::GetChangesResponse& response) {
    const auto state = service_.current();
    const Catalog& catalog = state->catalog;
    // A cache of another lineage (a store restored, a failover that lost a publish): refetch.
    if (!request.since_epoch().empty() && request.since_epoch() != catalog.epoch) {
      response.set_version(catalog.version);
      response.set_epoch(catalog.epoch);
      response.set_refetch_all(true);
      return sdk::Status::ok();
    }
    if (request.since_version() > catalog.version) {
      // A version no publish has made yet (a cache from elsewhere, or a made-up number): refetch.
      if (request.since_version() > service_.head().version) {
        response.set_version(catalog.version);
        response.set_epoch(catalog.epoch);
        response.set_refetch_all(true);
        return sdk::Status::ok();
      }
      return {sdk::StatusCode::kUnavailable,
              "this host holds catalog version " + std::to_string(catalog.version) +
                  ", older than since_version " + std::to_string(request.since_version()) +
                  "; try again shortly"};
    }
    response.set_version(catalog.version);
    response.set_epoch(catalog.epoch);
    const Changes changes = changes_since(catalog, state->history, request.since_version(), kMaxChangeRefs);
    // Counted while appended: past max_answer_bytes the caller refetches instead.
    size_t bytes = 0;
    bool too_large = changes.refetch_all;
    pb::Catalog one;
    for (const Ref& ref : changes.upserted) {
      if (too_large) break;
      one.Clear();
      append_definition(catalog, ref, one);
      bytes += one.ByteSizeLong() + kEntryOverhead;
      if (bytes > max_answer_bytes_) too_large = true;
      response.mutable_upserted()->MergeFrom(one);
    }
    for (const Ref& ref : changes.removed) {
      if (too_large) break;
      pb::DefinitionRef* removed = response.add_removed();
      to_proto(ref, *removed);
      bytes += removed->ByteSizeLong() + kEntryOverhead;
      if (ref.kind == Kind::kItem) {
        if (auto it = catalog.migrations.find(ref.id); it != catalog.migrations.end()) {
          pb::ItemMigration* m = response.add_migrations();
          to_proto(it->second, *m);
          bytes += m->ByteSizeLong() + kEntryOverhead;
        }
      }
      if (bytes > max_answer_bytes_) too_large = true;
    }
    if (too_large) {
      response.Clear();
      response.set_version(catalog.version);
      response.set_epoch(catalog.epoch);
      response.set_refetch_all(true);
    }
    return sdk::Status::ok();
  }

  sdk::Status lookup(sdk::CallContext&, const pb::LookupDefinitionsRequest& request,
                     pb::LookupDefinitionsResponse& response) {
    const size_t ids = static_cast<size_t>(request.item_ids_size()) +
                       static_cast<size_t>(request.currency_ids_size()) +
                       static_cast<size_t>(request.bundle_ids_size());
    if (ids > kMaxLookupIds) {
      return invalid("the lookup names " + std::to_string(ids) +
                     " ids (item_ids, currency_ids and bundle_ids); at most " +
                     std::to_string(kMaxLookupIds));
    }
    // Each id answered once, however often it is named: the answer stays within 1000 definitions.
    const std::set<std::string> item_ids(request.item_ids().begin(), request.item_ids().end());
    const std::set<std::string> currency_ids(request.currency_ids().begin(), request.currency_ids().end());
    const std::set<std::string> bundle_ids(request.bundle_ids().begin(), request.bundle_ids().end());
    const auto state = service_.current();
    const Catalog& catalog = state->catalog;
    response.set_version(catalog.version);
    // Counted while appended: an answer past max_answer_bytes is refused, not truncated (an absent
    // id means "unknown" to the caller).
    size_t bytes = 0;
    auto counted = [&](const auto& added) {
      bytes += added.ByteSizeLong() + kEntryOverhead;
      return bytes <= max_answer_bytes_;
    };
    bool fits = true;
    for (auto id = item_ids.begin(); fits && id != item_ids.end(); ++id) {
      if (auto it = catalog.items.find(*id); it != catalog.items.end()) {
        pb::ItemDefinition* added = response.add_items();
        to_proto(it->second, *added);
        fits = counted(*added);
      } else if (auto m = catalog.migrations.find(*id); m != catalog.migrations.end()) {
        pb::ItemMigration* added = response.add_migrations();
        to_proto(m->second, *added);
        fits = counted(*added);
      }
    }
    for (auto id = currency_ids.begin(); fits && id != currency_ids.end(); ++id) {
      if (auto it = catalog.currencies.find(*id); it != catalog.currencies.end()) {
        pb::CurrencyDefinition* added = response.add_currencies();
        to_proto(it->second, *added);
        fits = counted(*added);
      }
    }
    for (auto id = bundle_ids.begin(); fits && id != bundle_ids.end(); ++id) {
      if (auto it = catalog.bundles.find(*id); it != catalog.bundles.end()) {
        pb::BundleDefinition* added = response.add_bundles();
        to_proto(it->second, *added);
        fits = counted(*added);
      }
    }
    if (!fits) {
      response.Clear();
      return {sdk::StatusCode::kResourceExhausted,
              "the definitions asked for pass " + std::to_string(max_answer_bytes_) +
                  " bytes (max_answer_bytes): ask for fewer ids per call"};
    }
    return sdk::Status::ok();
  }

  sdk::Status publish(sdk::CallContext& call, const pb::PublishRequest& request,
                      pb::PublishResponse& response) {
    // The gate lets admins in; a plugin calling with its own trust passed no gate and must be listed.
    const sdk::Principal caller = call.principal();
    const std::string_view plugin = trusted_plugins_.trusted_caller(call);
    if (!sdk::meets_role(caller, "admin") && plugin.empty()) {
      return {sdk::StatusCode::kPermissionDenied,
              call.plugin_with_own_trust().empty()
                  ? "publishing a catalog needs the role 'admin'"
                  : "plugin '" + std::string(call.plugin_with_own_trust()) +
                        "' publishes with its own trust but is not in resource-manager's trusted_plugins"};
    }
    try {
      const std::string actor = plugin.empty() ? caller.user_id : "plugin:" + std::string(plugin);
      const PublishOutcome outcome = service_.publish(
          request_of(request), [this](const std::vector<std::string>& ids) { return held(ids); }, actor);
      response.set_version(outcome.version);
      response.set_unchanged(outcome.unchanged);
      response.set_upserted(static_cast<uint32_t>(outcome.upserted));
      response.set_removed(static_cast<uint32_t>(outcome.removed));
      if (!outcome.unchanged) {
        published_.record(1, {"published"});
        host_.info("catalog version " + std::to_string(outcome.version) + " published by '" + actor +
                   "': " + std::to_string(outcome.upserted) + " added or changed, " +
                   std::to_string(outcome.removed) + " removed");
        announce(outcome);
      } else {
        published_.record(1, {"unchanged"});
      }
      return sdk::Status::ok();
    } catch (const ValidationError& e) {
      published_.record(1, {"refused"});
      return sdk::status_of(e);
    } catch (const PublishRefused& e) {
      published_.record(1, {e.reason() == PublishRefused::Reason::kConflict ? "conflict" : "refused"});
      return sdk::status_of(e);
    }
  }

  std::unique_ptr<sdk::StreamSession> watch_open(sdk::CallContext& call, const pb::WatchCatalogRequest&,
                                                 sdk::ServerStream<pb::CatalogPublished> stream) {
    auto watcher = std::make_shared<Watcher>(stream);
    watcher->caller = call.principal().user_id;
    if (!watcher->caller.empty()) watcher->address = std::string(call.peer_address());
    add_watcher(watcher);
    return std::make_unique<WatchSession>(*this, watcher);
  }

  // The previous generation's stream: it goes on from the last version it sent.
  std::unique_ptr<sdk::StreamSession> watch_resume(std::string_view detached,
                                                   sdk::ServerStream<pb::CatalogPublished> stream) {
    rec::DetachedWatch state;
    if (!state.ParseFromArray(detached.data(), static_cast<int>(detached.size()))) {
      throw sdk::Error(sdk::StatusCode::kInternal,
                       "a catalog watch handed over at a reload could not be read");
    }
    auto watcher = std::make_shared<Watcher>(stream);
    watcher->any_sent = state.any_sent();
    watcher->sent = state.sent_version();
    watcher->caller = state.caller();
    watcher->address = state.address();
    add_watcher(watcher, /*resumed=*/true);
    return std::make_unique<WatchSession>(*this, watcher);
  }

  // Stops the stream here (nothing more is written once this returns) and says what it sent.
  std::string detach(const std::shared_ptr<Watcher>& watcher) {
    rec::DetachedWatch state;
    {
      std::lock_guard lock(watcher->mu);
      watcher->ended = true;
      state.set_sent_version(watcher->sent);
      state.set_any_sent(watcher->any_sent);
      state.set_caller(watcher->caller);
      state.set_address(watcher->address);
    }
    forget(watcher);
    return state.SerializeAsString();
  }

  void close(const std::shared_ptr<Watcher>& watcher) {
    {
      std::lock_guard lock(watcher->mu);
      watcher->ended = true;
    }
    forget(watcher);
  }

 private:
  // Who holds the given items, by the inventory's holders index.
  std::vector<std::string> held(const std::vector<std::string>& ids) {
    rec::HeldItemsQuery query;
    for (const std::string& id : ids) query.add_item_ids(id);
    const sdk::CallResult result =
        host_.call(kFindHeldItems, query.SerializeAsString(), sdk::as_plugin, holders_timeout_);
    std::string list;
    for (size_t i = 0; i < ids.size() && i < 5; ++i) list += (i ? ", '" : "'") + ids[i].substr(0, 64) + "'";
    if (ids.size() > 5) list += " and " + std::to_string(ids.size() - 5) + " more";
    if (result.status.code() == sdk::StatusCode::kUnimplemented) {
      throw PublishRefused(
          PublishRefused::Reason::kCannotConfirm,
          "removing retired item(s) without a migration, or defining a migrated item's id again (" + list +
              "), needs the inventory plugin to confirm nobody holds them, and it is not loaded "
              "(FindHeldItems is UNIMPLEMENTED): state a migration, or use another id; nothing was "
              "published");
    }
    if (!result.status.is_ok()) {
      throw PublishRefused(PublishRefused::Reason::kCannotConfirm,
                           "could not confirm that nobody holds item(s) " + list +
                               ": FindHeldItems failed with " + code_name(result.status.code()) + " (" +
                               result.status.message() + "); nothing was published");
    }
    rec::HeldItemsAnswer answer;
    if (!answer.ParseFromString(result.response)) {
      throw PublishRefused(
          PublishRefused::Reason::kCannotConfirm,
          "FindHeldItems answered with bytes that are not a FindHeldItemsResponse; nothing was published");
    }
    return {answer.held_item_ids().begin(), answer.held_item_ids().end()};
  }

  // Announces the version this publish made, with its own time (a later version may be held by
  // the time this runs).
  void announce(const PublishOutcome& outcome) {
    const uint64_t version = outcome.version;
    pb::CatalogPublished message;
    message.set_version(version);
    message.set_published_unix_ms(outcome.published_unix_ms);
    version_gauge_.record(static_cast<double>(service_.current()->catalog.version));
    notify_watchers();
    try {
      host_.publish(kCatalogTopic, message.SerializeAsString());
    } catch (const sdk::Error& e) {
      // Committed all the same; other hosts find it at their next head check.
      host_.warn(std::string("catalog version ") + std::to_string(version) +
                 " was published but not announced: " + e.what());
    }
  }

  void announced(std::string_view payload) {
    pb::CatalogPublished message;
    if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return;
    // Even a version not above the one held: it may be another lineage's (one head read).
    refresh();
  }

  // Reads the store again (a few times, briefly) until this generation holds at least the version
  // the previous one held, so a reload never serves an older catalog than before it.
  void catch_up(std::string_view previous_state) {
    rec::HeldCatalog before;
    if (previous_state.empty() ||
        !before.ParseFromArray(previous_state.data(), static_cast<int>(previous_state.size()))) {
      return;
    }
    for (int attempt = 0; attempt < kCatchUpAttempts; ++attempt) {
      const auto state = service_.current();
      if (state->catalog.epoch != before.epoch() || state->catalog.version >= before.version()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      service_.refresh();
    }
    host_.warn("catalog version " + std::to_string(before.version()) +
               " held before the reload is not readable yet; holding version " +
               std::to_string(service_.current()->catalog.version) + " until the next head check");
  }

  void refresh() {
    try {
      const auto started = std::chrono::steady_clock::now();
      if (service_.refresh()) {
        const auto state = service_.current();
        version_gauge_.record(static_cast<double>(state->catalog.version));
        host_.info("catalog version " + std::to_string(state->catalog.version) +
                   " read: " + std::to_string(state->catalog.size()) + " definitions, in " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - started)
                                      .count()) +
                   " ms");
        notify_watchers();
      }
    } catch (const sdk::Error& e) {
      host_.warn(std::string("the catalog could not be read again: ") + e.what());
    }
  }

  // Registers the watcher and sends it the version held. A refusal finishes the stream with its
  // status here, and marks the watcher ended so no announcement writes to it.
  void add_watcher(const std::shared_ptr<Watcher>& watcher, bool resumed = false) {
    try {
      register_watcher(watcher, resumed);
    } catch (const sdk::Error& e) {
      std::lock_guard lock(watcher->mu);
      watcher->ended = true;
      watcher->stream.finish(e.status());
      return;
    }
    send_current(watcher);
  }

  void register_watcher(const std::shared_ptr<Watcher>& watcher, bool resumed) {
    std::lock_guard lock(watchers_mu_);
    if (!resumed && watchers_.size() >= max_watchers_) {
      throw sdk::Error(
          sdk::StatusCode::kResourceExhausted,
          "this host already has " + std::to_string(max_watchers_) + " catalog watches open (max_watchers)");
    }
    if (!watcher->caller.empty()) {
      size_t& mine = watches_per_caller_[watcher->caller];
      if (!resumed && mine >= max_watchers_per_caller_) {
        throw sdk::Error(sdk::StatusCode::kResourceExhausted,
                         "this account already has " + std::to_string(mine) +
                             " catalog watches open on this host (max_watchers_per_caller)");
      }
      if (!watcher->address.empty()) {
        auto from_address = watches_per_address_.find(watcher->address);
        const size_t there = from_address == watches_per_address_.end() ? 0 : from_address->second;
        if (!resumed && there >= max_watchers_per_address_) {
          if (mine == 0) watches_per_caller_.erase(watcher->caller);
          throw sdk::Error(sdk::StatusCode::kResourceExhausted,
                           "this network address already has " + std::to_string(there) +
                               " catalog watches open on this host (max_watchers_per_address)");
        }
        ++watches_per_address_[watcher->address];
      }
      ++mine;
    }
    watcher->registered = true;
    watchers_.push_back(watcher);
    watchers_gauge_.record(static_cast<double>(watchers_.size()));
  }

  void forget(const std::shared_ptr<Watcher>& watcher) {
    std::lock_guard lock(watchers_mu_);
    if (!watcher->registered) return;
    watcher->registered = false;
    if (!watcher->caller.empty()) {
      auto it = watches_per_caller_.find(watcher->caller);
      if (it != watches_per_caller_.end() && --it->second == 0) watches_per_caller_.erase(it);
      auto from_address = watches_per_address_.find(watcher->address);
      if (from_address != watches_per_address_.end() && --from_address->second == 0)
        watches_per_address_.erase(from_address);
    }
    watchers_.remove(watcher);
    watchers_gauge_.record(static_cast<double>(watchers_.size()));
  }

  // Sends the version held when the watcher has not had it; a stream the client left ends.
  void send_current(const std::shared_ptr<Watcher>& watcher) {
    const auto state = service_.current();
    bool gone = false;
    {
      std::lock_guard lock(watcher->mu);
      if (watcher->ended || (watcher->any_sent && watcher->sent >= state->catalog.version)) return;
      pb::CatalogPublished message;
      message.set_version(state->catalog.version);
      message.set_published_unix_ms(state->catalog.published_unix_ms);
      if (watcher->stream.write(message)) {
        watcher->any_sent = true;
        watcher->sent = state->catalog.version;
      } else {
        watcher->ended = true;
        gone = true;
      }
    }
    if (gone) forget(watcher);
  }

  void notify_watchers() {
    std::vector<std::shared_ptr<Watcher>> all;
    {
      std::lock_guard lock(watchers_mu_);
      all.assign(watchers_.begin(), watchers_.end());
    }
    for (const auto& w : all) send_current(w);
  }

  sdk::Host host_;
  StoreCatalogRepository repository_;
  CatalogService service_;
  const size_t max_answer_bytes_;
  const size_t max_watchers_;
  const size_t max_watchers_per_caller_;
  const size_t max_watchers_per_address_;
  const std::chrono::milliseconds holders_timeout_;
  const sdk::TrustedPlugins trusted_plugins_;
  sdk::Metric published_;
  sdk::Metric version_gauge_;
  sdk::Metric watchers_gauge_;
  std::mutex watchers_mu_;
  std::list<std::shared_ptr<Watcher>> watchers_;
  std::map<std::string, size_t> watches_per_caller_;
  std::map<std::string, size_t> watches_per_address_;
  sdk::Subscription announcements_;
  sdk::Timer refresh_timer_;
};

std::string WatchSession::detach() {
  return plugin_.detach(watcher_);
}

void WatchSession::on_cancel() {
  plugin_.close(watcher_);
}

}  // namespace

GAMEVERSE_PLUGIN(ResourcesPlugin, "resource-manager", "0.1.0",
                 "The content catalog: item, currency and bundle definitions and asset manifests, published "
                 "in atomic versions")
