#include "domain/catalog_service.hpp"

#include <algorithm>
#include <exception>
#include <optional>
#include <random>

namespace gameverse::resources {

namespace {

std::string quoted_id(const std::string& id) {
  std::string out;
  for (char c : id.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return "'" + out + "'";
}

// 32 hex digits from the system's random source.
std::string random_id() {
  std::random_device source;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 4; ++i) {
    uint32_t bits = source();
    for (int k = 0; k < 8; ++k, bits >>= 4) out += kHex[bits & 0xf];
  }
  return out;
}

// What a migration converts each unit into, for messages.
std::string describe(const Migration& m) {
  if (m.discard) return "discarded";
  std::string out = "each unit becomes";
  if (m.to_item) out += " " + std::to_string(m.to_item->count) + " of item " + quoted_id(m.to_item->item_id);
  if (m.to_item && m.to_currency) out += " and";
  if (m.to_currency)
    out +=
        " " + std::to_string(m.to_currency->amount) + " of currency " + quoted_id(m.to_currency->currency_id);
  return out;
}

}  // namespace

CatalogService::CatalogService(CatalogRepository& repository, Limits limits, size_t history,
                               std::function<int64_t()> now_ms)
    : repository_(repository),
      limits_(limits),
      history_(std::max<size_t>(history, 1)),
      now_ms_(std::move(now_ms)),
      state_(std::make_shared<CatalogState>()) {}

std::shared_ptr<const CatalogState> CatalogService::current() const {
  std::lock_guard lock(mu_);
  return state_;
}

void CatalogService::hold(std::shared_ptr<const CatalogState> state, bool lineage_changed) {
  std::lock_guard lock(mu_);
  if (lineage_changed || state->catalog.version >= state_->catalog.version) state_ = std::move(state);
}

void CatalogService::load() {
  std::lock_guard serial(store_mu_);
  hold(std::make_shared<CatalogState>(repository_.load(history_)), true);
  settle();
}

bool CatalogService::refresh() {
  // A refresh never waits behind a publish (which may wait seconds for the inventory): it leaves
  // word for whoever holds the store, which reads the head again before letting go.
  std::unique_lock serial(store_mu_, std::try_to_lock);
  if (!serial.owns_lock()) {
    refresh_wanted_ = true;
    return false;
  }
  const uint64_t before = current()->catalog.version;
  const std::string before_id = current()->catalog.publish_id;
  refresh_locked();
  settle();
  return current()->catalog.version != before || current()->catalog.publish_id != before_id;
}

void CatalogService::settle() {
  while (refresh_wanted_.exchange(false)) refresh_locked();
}

bool CatalogService::refresh_locked() {
  const std::shared_ptr<const CatalogState> held = current();
  const Catalog& mine = held->catalog;
  const Head head = repository_.head();
  if (head.version == mine.version && head.epoch == mine.epoch && head.publish_id == mine.publish_id)
    return false;
  // Ahead in the same lineage: read what the versions since changed. Anything else (another epoch,
  // the same or an older version under another publish id) is another history: read it whole.
  const bool ahead = head.epoch == mine.epoch && head.version > mine.version;
  std::optional<CatalogState> next;
  if (ahead) next = repository_.advance(*held, history_);
  if (!next) next = repository_.load(history_);
  hold(std::make_shared<CatalogState>(std::move(*next)), !ahead);
  const Catalog& now = current()->catalog;
  return now.version != mine.version || now.epoch != mine.epoch || now.publish_id != mine.publish_id;
}

void CatalogService::settle_quietly() {
  try {
    settle();
  } catch (const std::exception&) {
    refresh_wanted_ = true;  // published all the same; the next refresh reads the head
  }
}

PublishOutcome CatalogService::publish(const PublishRequest& request, const HeldItems& held,
                                       const std::string& actor) {
  std::lock_guard serial(store_mu_);
  // Before letting go of the store, whatever the outcome: the refreshes asked for meanwhile.
  struct Settle {
    CatalogService& service;
    ~Settle() { service.settle_quietly(); }
  } settle_on_exit{*this};
  refresh_locked();  // plan against the newest version, not one an announcement has yet to bring
  std::shared_ptr<const CatalogState> base = current();
  PublishRequest timed = request;
  const int64_t now = now_ms_();
  timed.now_unix_ms = now;
  PublishPlan plan = plan_publish(base->catalog, timed, limits_);
  if (plan.unchanged()) return {base->catalog.version, base->catalog.published_unix_ms, true, 0, 0};
  // Nobody may hold a retired item removed without a migration, nor a removed item defined
  // again: its kept migration would go, and unconverted holdings would become the new item.
  std::vector<std::string> ask = plan.needs_unheld;
  ask.insert(ask.end(), plan.cleared_migrations.begin(), plan.cleared_migrations.end());
  if (!ask.empty()) {
    const std::vector<std::string> holding = held(ask);
    std::vector<std::string> removed, redefined;
    for (const std::string& id : holding) {
      if (base->catalog.migrations.contains(id))
        redefined.push_back(id);
      else
        removed.push_back(id);
    }
    auto listed = [](const std::vector<std::string>& ids) {
      std::string list;
      for (size_t i = 0; i < ids.size() && i < 10; ++i) list += (i ? ", " : "") + quoted_id(ids[i]);
      if (ids.size() > 10) list += " and " + std::to_string(ids.size() - 10) + " more";
      return list;
    };
    if (!redefined.empty()) {
      const Migration& m = base->catalog.migrations.at(redefined.front());
      throw PublishRefused(
          PublishRefused::Reason::kHeld,
          "item(s) " + listed(redefined) +
              " cannot be defined again: players still hold units not yet converted by the migration "
              "kept for them (" +
              quoted_id(m.from_item_id) + " removed in version " + std::to_string(m.catalog_version) + ", " +
              describe(m) +
              "), which defining the id again would drop; use another id; nothing was published");
    }
    if (!removed.empty()) {
      throw PublishRefused(
          PublishRefused::Reason::kHeld,
          "retired item(s) " + listed(removed) +
              " are still held by players: removing them needs a migration; nothing was published");
    }
  }
  const uint64_t version = base->catalog.version + 1;
  plan.next.version = version;
  plan.next.published_unix_ms = now;
  plan.next.epoch = base->catalog.epoch.empty() ? random_id() : base->catalog.epoch;
  plan.next.publish_id = random_id();
  for (Migration& m : plan.new_migrations) {
    m.catalog_version = version;
    plan.next.migrations[m.from_item_id].catalog_version = version;
  }
  ChangeRecord record{version, now, plan.upserted, actor, plan.next.publish_id};
  record.changed.insert(record.changed.end(), plan.removed.begin(), plan.removed.end());
  std::sort(record.changed.begin(), record.changed.end());

  int64_t revision = 0;
  bool committed = false;
  try {
    committed = repository_.commit(*base, plan, record, revision);
  } catch (const std::exception&) {
    // The write may have held with its answer lost: the head says whether it is this publish.
    const std::exception_ptr failure = std::current_exception();
    Head head;
    try {
      head = repository_.head();
    } catch (const std::exception&) {
      std::rethrow_exception(failure);  // the commit's error is the one to report
    }
    if (head.publish_id != plan.next.publish_id) std::rethrow_exception(failure);
    hold(std::make_shared<CatalogState>(repository_.load(history_)), true);
    return {version, now, false, plan.upserted.size(), plan.removed.size()};
  }
  if (!committed) {
    hold(std::make_shared<CatalogState>(repository_.load(history_)), true);
    const uint64_t now_held = current()->catalog.version;
    const std::string what = now_held != base->catalog.version
                                 ? "another publish made version " + std::to_string(now_held)
                                 : "another publish moved the catalog";
    throw PublishRefused(PublishRefused::Reason::kConflict,
                         what + " while this one was built on version " +
                             std::to_string(base->catalog.version) +
                             "; nothing was published: check the new version and publish again");
  }
  auto next = std::make_shared<CatalogState>();
  next->catalog = std::move(plan.next);
  next->history = base->history;
  next->history.push_back(record);
  if (next->history.size() > history_) {
    next->history.erase(next->history.begin(),
                        next->history.begin() + static_cast<std::ptrdiff_t>(next->history.size() - history_));
  }
  next->head_revision = revision;
  hold(next);
  return {version, now, false, plan.upserted.size(), plan.removed.size()};
}

}  // namespace gameverse::resources
