#include "domain/metrics_service.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

namespace gameverse::metrics {

namespace {

MetricsError invalid(const std::string& message) {
  return MetricsError(MetricsError::Kind::kInvalidArgument, message);
}
MetricsError exhausted(const std::string& message) {
  return MetricsError(MetricsError::Kind::kResourceExhausted, message);
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return "(" + out + ")";
}

std::vector<std::string> names_of(const Labels& labels) {
  std::vector<std::string> out;
  for (const auto& [name, value] : labels) out.push_back(name);
  return out;
}

int64_t floor_to(int64_t t, int64_t width) {
  const int64_t r = t % width;
  return r < 0 ? t - r - width : t - r;
}

int64_t floor_div_ms(int64_t ms) {
  return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
}

}  // namespace

size_t pending_bytes(const WindowEntry& e) {
  size_t bytes = sizeof(WindowEntry) + 2 * e.metric.size() + 16 * (e.bounds.size() + 1);
  // Each label once in the entry and once in the map's key.
  for (const auto& [name, value] : e.labels) bytes += 2 * (name.size() + value.size()) + 96;
  return bytes;
}

MetricsService::MetricsService(Settings settings, Exposition* exposition, uint64_t tracking_since_ns)
    : settings_(std::move(settings)),
      exposition_(exposition),
      limiter_(settings_.limits),
      cumulative_(tracking_since_ns, settings_.limits.total, settings_.max_cumulative_bytes) {}

std::string MetricsService::check_labels(const Labels& labels, const std::string& what) const {
  if (labels.size() > settings_.max_labels) {
    return what + " has " + std::to_string(labels.size()) + " labels; a metric has at most " +
           std::to_string(settings_.max_labels) + " (max_labels)";
  }
  for (const auto& [name, value] : labels) {
    if (std::string e = label_name_error(name, what + " label"); !e.empty()) return e;
    if (value.size() > settings_.max_label_value_bytes) {
      return what + " label '" + name + "' has a value of " + std::to_string(value.size()) +
             " bytes; at most " + std::to_string(settings_.max_label_value_bytes) +
             " (max_label_value_bytes)";
    }
  }
  return {};
}

std::string MetricsService::resolve(const std::string& name, Kind kind, const Labels& labels,
                                    const std::vector<double>* bounds, const std::string& what, Family& out,
                                    size_t new_families, const std::string& creator) const {
  const std::string field = what.back() == ']' ? what + ".name" : "metric name";
  if (std::string e = metric_name_error(name, field); !e.empty()) return e;
  if (std::string e = check_labels(labels, what); !e.empty()) return e;
  const std::vector<std::string> label_names = names_of(labels);
  const auto it = families_.find(name);
  if (it == families_.end()) {
    if (creator.empty() && families_.size() - player_families_ + new_families >= settings_.max_metrics) {
      return "the metrics service holds " + std::to_string(families_.size() - player_families_) +
             " exported metrics, its limit (max_metrics = " + std::to_string(settings_.max_metrics) + "): '" +
             name + "' is refused";
    }
    if (!creator.empty()) {
      if (player_families_ + new_families >= settings_.max_player_metrics) {
        return "the metrics service holds " + std::to_string(player_families_) +
               " recorded metrics, its limit (max_player_metrics = " +
               std::to_string(settings_.max_player_metrics) + "): '" + name + "' is refused";
      }
      const auto mine = names_of_creator_.find(creator);
      const size_t made = (mine == names_of_creator_.end() ? 0 : mine->second) + new_families;
      if (made >= settings_.max_names_per_player) {
        return "'" + creator + "' made " + std::to_string(made) +
               " metric names, its limit (max_names_per_player = " +
               std::to_string(settings_.max_names_per_player) + "): '" + name + "' is refused";
      }
    }
    out = Family{name, kind, label_names,
                 kind == Kind::kHistogram && bounds != nullptr ? *bounds : std::vector<double>{}, creator};
    return {};
  }
  const Family& f = it->second;
  if (f.kind != kind) {
    return what + ": metric '" + name + "' is a " + kind_name(f.kind) + "; it cannot take a " +
           kind_name(kind) + " value";
  }
  if (f.label_names != label_names) {
    return what + ": metric '" + name + "' has the labels " + joined(f.label_names) + "; this one has " +
           joined(label_names);
  }
  if (kind == Kind::kHistogram && bounds != nullptr && f.bounds != *bounds) {
    return what + ": histogram '" + name + "' has other bucket bounds than the ones it was first sent with";
  }
  out = f;
  return {};
}

void MetricsService::count_new(const Family& family) {
  if (family.name.rfind(kPlayerPrefix, 0) == 0) ++player_families_;
  if (!family.creator.empty()) ++names_of_creator_[family.creator];
}

void MetricsService::check_store_and_room() const {
  if (store_down_) {
    throw MetricsError(MetricsError::Kind::kUnavailable, "the metrics store is unavailable: " + *store_down_);
  }
  if (windows_.size() >= settings_.max_pending_entries) {
    throw exhausted("the metrics service holds " + std::to_string(windows_.size()) +
                    " window aggregates not yet stored, its limit (max_pending_entries = " +
                    std::to_string(settings_.max_pending_entries) + ")");
  }
  if (pending_bytes_ >= settings_.max_pending_bytes) {
    throw exhausted("the metrics service holds " + std::to_string(pending_bytes_) +
                    " bytes of window aggregates not yet stored, its limit (max_pending_bytes = " +
                    std::to_string(settings_.max_pending_bytes) + ")");
  }
}

void MetricsService::add(const Family& family, const Labels& labels, int64_t at_ms,
                         const std::function<void(Aggregate&)>& fn) {
  const std::string key = series_key(family.name, labels);
  const int64_t at_s = floor_div_ms(at_ms);
  for (size_t r = 0; r < settings_.resolutions.size(); ++r) {
    const int64_t start = floor_to(at_s, settings_.resolutions[r].width_s);
    auto [it, inserted] = windows_.try_emplace(WindowKey{r, start, key});
    if (inserted) {
      it->second.resolution = r;
      it->second.start_s = start;
      it->second.metric = family.name;
      it->second.labels = labels;
      it->second.kind = family.kind;
      it->second.bounds = family.bounds;
      pending_bytes_ += pending_bytes(it->second);
    }
    fn(it->second.aggregate);
  }
}

size_t MetricsService::record(const std::string& sender, const std::vector<Measurement>& batch,
                              int64_t now_ms) {
  struct Planned {
    Family family;
    Labels labels;
    double value;
  };
  std::lock_guard lock(mu_);
  check_store_and_room();
  std::vector<Planned> planned;
  std::vector<Family> created;
  auto plan = [&](const std::string& name, Kind kind, const Labels& labels, double value,
                  const std::string& what) {
    Family family;
    const std::vector<double>* bounds = kind == Kind::kHistogram ? &settings_.histogram_bounds : nullptr;
    std::string error;
    if (name.rfind(kPlayerPrefix, 0) != 0) {
      error = what + ".name '" + name + "' does not begin with '" + kPlayerPrefix +
              "': recorded metrics are named apart from exported ones";
    } else {
      error = resolve(name, kind, labels, bounds, what, family, created.size(), sender);
    }
    if (error.empty() && families_.count(name) == 0) {
      // A family made earlier in this batch binds the rest of it.
      const auto same =
          std::find_if(created.begin(), created.end(), [&](const Family& f) { return f.name == name; });
      if (same == created.end()) {
        created.push_back(family);
      } else if (same->kind != kind || same->label_names != family.label_names) {
        error = what + ": metric '" + name + "' is recorded earlier in this batch as a " +
                kind_name(same->kind) + " with the labels " + joined(same->label_names);
      }
    }
    if (!error.empty()) throw invalid(error);
    planned.push_back({std::move(family), labels, value});
  };
  for (size_t i = 0; i < batch.size(); ++i) {
    const Measurement& m = batch[i];
    const std::string what = "measurements[" + std::to_string(i) + "]";
    if (!std::isfinite(m.value)) throw invalid(what + " has a value that is not a finite number");
    switch (m.type) {
      case Measurement::Type::kCounterAdd:
        if (m.value < 0) throw invalid(what + ".counter_add is negative; a counter only goes up");
        plan(m.name, Kind::kCounter, m.labels, m.value, what);
        break;
      case Measurement::Type::kGaugeSet: plan(m.name, Kind::kGauge, m.labels, m.value, what); break;
      case Measurement::Type::kHistogramObserve:
        plan(m.name, Kind::kHistogram, m.labels, m.value, what);
        break;
      case Measurement::Type::kEvent:
        plan(m.name, Kind::kCounter, m.labels, 1, what);
        if (m.duration_s) {
          if (!std::isfinite(*m.duration_s) || *m.duration_s < 0) {
            throw invalid(what + ".event.duration_s is not a finite number of seconds at least 0");
          }
          plan(m.name + "_duration_seconds", Kind::kHistogram, m.labels, *m.duration_s, what + ".event");
        }
        break;
    }
  }
  std::vector<NewSeries> series;
  series.reserve(planned.size());
  for (const Planned& p : planned) series.push_back({series_key(p.family.name, p.labels), p.family.name});
  if (std::string refused = limiter_.admit(sender, series, floor_div_ms(now_ms)); !refused.empty()) {
    throw exhausted(refused);
  }
  for (Family& f : created) {
    families_[f.name] = f;
    count_new(f);
    new_families_.push_back(std::move(f));
  }
  for (const Planned& p : planned) {
    const Family& family = families_.at(p.family.name);
    add(family, p.labels, now_ms, [&](Aggregate& a) {
      a.add(p.value, now_ms, family.kind == Kind::kHistogram ? &family.bounds : nullptr);
    });
    if (exposition_ != nullptr && settings_.expose_recorded) exposition_->record(family, p.labels, p.value);
  }
  return batch.size();
}

ExportOutcome MetricsService::export_points(const std::string& sender, const std::vector<OtlpPoint>& points,
                                            int64_t now_ms) {
  std::lock_guard lock(mu_);
  check_store_and_room();
  ExportOutcome outcome;
  std::set<std::string> reasons;
  auto reject = [&](const std::string& reason) {
    ++outcome.rejected;
    if (reasons.size() < 3 && reasons.insert(reason).second) {
      outcome.error_message += (outcome.error_message.empty() ? "" : "; ") + reason;
    }
  };
  const int64_t now_s = floor_div_ms(now_ms);
  for (const OtlpPoint& p : points) {
    const std::string what = "metric '" + p.metric + "'";
    if (windows_.size() >= settings_.max_pending_entries || pending_bytes_ >= settings_.max_pending_bytes) {
      reject("the metrics service holds " + std::to_string(windows_.size()) + " window aggregates of " +
             std::to_string(pending_bytes_) +
             " bytes not yet stored, its limit (max_pending_entries, max_pending_bytes)");
      continue;
    }
    if (!p.error.empty()) {
      reject(p.error);
      continue;
    }
    const int64_t at_ms = static_cast<int64_t>(p.time_ns / 1000000);
    if (p.time_ns == 0 || at_ms < now_ms - settings_.max_lateness_s * 1000 || at_ms > now_ms + 300 * 1000) {
      reject(what + ": time_unix_nano is not within max_lateness_s (" +
             std::to_string(settings_.max_lateness_s) + " s) before now or 5 minutes after");
      continue;
    }
    if (!std::isfinite(p.value) || !std::isfinite(p.histogram.sum)) {
      reject(what + ": a value is not a finite number");
      continue;
    }
    if (p.kind == Kind::kHistogram) {
      const auto& h = p.histogram;
      if (h.bounds.size() > kMaxHistogramBounds) {
        reject(what + ": a histogram point has " + std::to_string(h.bounds.size()) +
               " explicit_bounds; at most " + std::to_string(kMaxHistogramBounds) + " are taken");
        continue;
      }
      if (h.buckets.size() != h.bounds.size() + 1 ||
          !std::is_sorted(h.bounds.begin(), h.bounds.end(), std::less_equal<double>()) ||
          std::adjacent_find(h.bounds.begin(), h.bounds.end()) != h.bounds.end()) {
        reject(what +
               ": a histogram point needs increasing explicit_bounds and one bucket_count more than bounds");
        continue;
      }
    }
    if (p.metric.rfind(kPlayerPrefix, 0) == 0) {
      reject(what + ": names beginning with '" + kPlayerPrefix + "' are kept for what players Record");
      continue;
    }
    Family family;
    if (std::string e =
            resolve(p.metric, p.kind, p.labels, p.kind == Kind::kHistogram ? &p.histogram.bounds : nullptr,
                    what, family, 0, "");
        !e.empty()) {
      reject(e);
      continue;
    }
    const std::string key = series_key(p.metric, p.labels);
    if (std::string refused = limiter_.admit(sender, {{key, p.metric}}, now_s); !refused.empty()) {
      reject(refused);
      continue;
    }
    if (families_.count(family.name) == 0) {
      families_[family.name] = family;
      count_new(family);
      new_families_.push_back(family);
    }
    const Family& f = families_.at(family.name);
    try {
      if (p.kind == Kind::kHistogram) {
        std::optional<HistogramValue> delta = p.histogram;
        if (p.cumulative)
          delta = cumulative_.histogram_delta(p.stream + "|" + key, p.start_ns, p.histogram, now_s);
        if (delta) {
          // min and max of a cumulative point cover all of its time, not the delta: kept for deltas only.
          const double* min = !p.cumulative && p.min ? &*p.min : nullptr;
          const double* max = !p.cumulative && p.max ? &*p.max : nullptr;
          add(f, p.labels, at_ms,
              [&](Aggregate& a) { a.add_buckets(delta->buckets, delta->sum, delta->count, min, max); });
        }
      } else {
        std::optional<double> value = p.value;
        if (p.cumulative) value = cumulative_.sum_delta(p.stream + "|" + key, p.start_ns, p.value, now_s);
        if (value) {
          add(f, p.labels, at_ms, [&](Aggregate& a) { a.add(*value, at_ms); });
          if (exposition_ != nullptr) exposition_->record(f, p.labels, *value);
        }
      }
      ++outcome.accepted;
    } catch (const std::length_error& e) {
      reject(e.what());
    }
  }
  return outcome;
}

std::vector<WindowEntry> MetricsService::take_closed(int64_t now_s) {
  std::lock_guard lock(mu_);
  std::vector<WindowEntry> out;
  for (auto it = windows_.begin(); it != windows_.end();) {
    const Resolution& r = settings_.resolutions[it->second.resolution];
    if (it->second.start_s + r.width_s + settings_.flush_delay_s <= now_s) {
      pending_bytes_ -= pending_bytes(it->second);
      out.push_back(std::move(it->second));
      it = windows_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

std::vector<WindowEntry> MetricsService::take_all() {
  std::lock_guard lock(mu_);
  std::vector<WindowEntry> out;
  out.reserve(windows_.size());
  for (auto& [key, entry] : windows_) out.push_back(std::move(entry));
  windows_.clear();
  pending_bytes_ = 0;
  return out;
}

void MetricsService::put_back(const std::vector<WindowEntry>& entries) {
  std::lock_guard lock(mu_);
  for (const WindowEntry& e : entries) {
    if (e.resolution >= settings_.resolutions.size()) continue;
    auto [it, inserted] =
        windows_.try_emplace(WindowKey{e.resolution, e.start_s, series_key(e.metric, e.labels)}, e);
    if (inserted) pending_bytes_ += pending_bytes(e);
    if (!inserted) it->second.aggregate.merge(e.aggregate);
  }
}

std::vector<Family> MetricsService::take_new_families() {
  std::lock_guard lock(mu_);
  return std::exchange(new_families_, {});
}

void MetricsService::load_families(const std::vector<Family>& families) {
  std::lock_guard lock(mu_);
  for (const Family& f : families) {
    if (families_.try_emplace(f.name, f).second) count_new(f);
  }
}

std::optional<Family> MetricsService::family(const std::string& name) const {
  std::lock_guard lock(mu_);
  const auto it = families_.find(name);
  if (it == families_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::pair<Family, size_t>> MetricsService::families(const std::string& prefix) const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<Family, size_t>> out;
  for (auto it = families_.lower_bound(prefix); it != families_.end() && it->first.rfind(prefix, 0) == 0;
       ++it) {
    out.emplace_back(it->second, limiter_.series_of_metric(it->first));
  }
  return out;
}

void MetricsService::set_store_down(std::optional<std::string> why) {
  std::lock_guard lock(mu_);
  store_down_ = std::move(why);
}

bool MetricsService::store_down() const {
  std::lock_guard lock(mu_);
  return store_down_.has_value();
}

std::vector<WindowEntry> MetricsService::pending(size_t resolution, const std::string& metric) const {
  std::lock_guard lock(mu_);
  std::vector<WindowEntry> out;
  for (auto it = windows_.lower_bound(WindowKey{resolution, std::numeric_limits<int64_t>::min(), ""});
       it != windows_.end() && std::get<0>(it->first) == resolution; ++it) {
    if (it->second.metric == metric) out.push_back(it->second);
  }
  return out;
}

void MetricsService::forget_idle(int64_t now_s) {
  std::lock_guard lock(mu_);
  limiter_.forget_idle(now_s - settings_.series_idle_s);
  cumulative_.forget_idle(now_s - settings_.series_idle_s);
}

std::vector<CumulativeTracker::Stream> MetricsService::cumulative_streams() const {
  std::lock_guard lock(mu_);
  return cumulative_.streams();
}

void MetricsService::restore_cumulative(const std::vector<CumulativeTracker::Stream>& streams) {
  std::lock_guard lock(mu_);
  cumulative_.restore(streams);
}

uint64_t MetricsService::tracking_since_ns() const {
  std::lock_guard lock(mu_);
  return cumulative_.tracking_since_ns();
}

size_t MetricsService::pending_entries() const {
  std::lock_guard lock(mu_);
  return windows_.size();
}

}  // namespace gameverse::metrics
