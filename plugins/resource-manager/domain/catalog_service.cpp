#include "domain/catalog_service.hpp"

#include <algorithm>

namespace gameverse::resources {

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

void CatalogService::hold(std::shared_ptr<const CatalogState> state) {
  std::lock_guard lock(mu_);
  // Never back: a slower reload must not replace a newer version held meanwhile.
  if (state->catalog.version >= state_->catalog.version) state_ = std::move(state);
}

void CatalogService::load() {
  hold(std::make_shared<CatalogState>(repository_.load(history_)));
}

bool CatalogService::refresh() {
  const std::shared_ptr<const CatalogState> held = current();
  if (repository_.head_version() == held->catalog.version) return false;
  if (std::optional<CatalogState> next = repository_.advance(*held, history_)) {
    hold(std::make_shared<CatalogState>(std::move(*next)));
  } else {
    load();
  }
  return current()->catalog.version != held->catalog.version;
}

PublishOutcome CatalogService::publish(const PublishRequest& request, const HeldItems& held,
                                       const std::string& actor) {
  std::lock_guard publishing(publish_mu_);
  refresh();  // plan against the newest version, not one an announcement has yet to bring
  std::shared_ptr<const CatalogState> base = current();
  PublishPlan plan = plan_publish(base->catalog, request, limits_);
  if (plan.unchanged()) return {base->catalog.version, true, 0, 0};
  if (!plan.needs_unheld.empty()) {
    const std::vector<std::string> holding = held(plan.needs_unheld);
    if (!holding.empty()) {
      std::string list;
      for (size_t i = 0; i < holding.size() && i < 10; ++i)
        list += (i ? ", '" : "'") + holding[i].substr(0, 64) + "'";
      if (holding.size() > 10) list += " and " + std::to_string(holding.size() - 10) + " more";
      throw PublishRefused(
          PublishRefused::Reason::kHeld,
          "retired item(s) " + list +
              " are still held by players: removing them needs a migration; nothing was published");
    }
  }
  const uint64_t version = base->catalog.version + 1;
  const int64_t now = now_ms_();
  plan.next.version = version;
  plan.next.published_unix_ms = now;
  for (Migration& m : plan.new_migrations) {
    m.catalog_version = version;
    plan.next.migrations[m.from_item_id].catalog_version = version;
  }
  ChangeRecord record{version, now, plan.upserted, actor};
  record.changed.insert(record.changed.end(), plan.removed.begin(), plan.removed.end());
  std::sort(record.changed.begin(), record.changed.end());

  int64_t revision = 0;
  if (!repository_.commit(*base, plan, record, revision)) {
    load();
    throw PublishRefused(PublishRefused::Reason::kConflict,
                         "another publish made version " + std::to_string(current()->catalog.version) +
                             " while this one was built on version " + std::to_string(base->catalog.version) +
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
  return {version, false, plan.upserted.size(), plan.removed.size()};
}

}  // namespace gameverse::resources
