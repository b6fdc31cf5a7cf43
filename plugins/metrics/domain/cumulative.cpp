#include "domain/cumulative.hpp"

#include <stdexcept>

namespace gameverse::metrics {

size_t CumulativeTracker::bytes_of(const Stream& s) {
  // The key twice (the map's and the stream's), the histogram's bounds and buckets.
  return sizeof(Stream) + 64 + 2 * s.key.size() +
         8 * (s.histogram.bounds.size() + s.histogram.buckets.size());
}

CumulativeTracker::Stream* CumulativeTracker::find_or_add(const std::string& stream, bool& is_new) {
  auto it = streams_.find(stream);
  is_new = it == streams_.end();
  if (!is_new) return &it->second;
  if (streams_.size() >= max_streams_) {
    throw std::length_error("the service tracks " + std::to_string(streams_.size()) +
                            " cumulative streams, its limit (max_series)");
  }
  if (bytes_ >= max_bytes_) {
    throw std::length_error("the service tracks " + std::to_string(bytes_) +
                            " bytes of cumulative streams, its limit (max_cumulative_bytes)");
  }
  Stream& s = streams_[stream];
  s.key = stream;
  bytes_ += bytes_of(s);
  return &s;
}

std::optional<double> CumulativeTracker::sum_delta(const std::string& stream, uint64_t start_ns, double value,
                                                   int64_t now_s) {
  bool is_new = false;
  Stream* s = find_or_add(stream, is_new);
  std::optional<double> delta;
  if (is_new) {
    if (start_ns >= since_ns_ && start_ns != 0) delta = value;
  } else if (start_ns != s->start_ns || value < s->value) {
    delta = value;  // a reset: counting began again from zero
  } else {
    delta = value - s->value;
  }
  s->start_ns = start_ns;
  s->value = value;
  s->seen_s = now_s;
  return delta;
}

std::optional<HistogramValue> CumulativeTracker::histogram_delta(const std::string& stream, uint64_t start_ns,
                                                                 const HistogramValue& value, int64_t now_s) {
  bool is_new = false;
  Stream* s = find_or_add(stream, is_new);
  std::optional<HistogramValue> delta;
  const HistogramValue& last = s->histogram;
  bool reset = start_ns != s->start_ns || value.bounds != last.bounds || value.count < last.count ||
               value.buckets.size() != last.buckets.size();
  if (!reset) {
    for (size_t i = 0; i < value.buckets.size(); ++i) reset = reset || value.buckets[i] < last.buckets[i];
  }
  if (is_new) {
    if (start_ns >= since_ns_ && start_ns != 0) delta = value;
  } else if (reset) {
    delta = value;
  } else {
    HistogramValue d;
    d.bounds = value.bounds;
    d.buckets.resize(value.buckets.size());
    for (size_t i = 0; i < value.buckets.size(); ++i) d.buckets[i] = value.buckets[i] - last.buckets[i];
    d.sum = value.sum - last.sum;
    d.count = value.count - last.count;
    delta = std::move(d);
  }
  s->start_ns = start_ns;
  bytes_ -= bytes_of(*s);
  s->histogram = value;
  bytes_ += bytes_of(*s);
  s->seen_s = now_s;
  return delta;
}

size_t CumulativeTracker::forget_idle(int64_t cutoff_s) {
  size_t n = 0;
  for (auto it = streams_.begin(); it != streams_.end();) {
    if (it->second.seen_s < cutoff_s) {
      bytes_ -= bytes_of(it->second);
      it = streams_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
}

std::vector<CumulativeTracker::Stream> CumulativeTracker::streams() const {
  std::vector<Stream> out;
  out.reserve(streams_.size());
  for (const auto& [key, s] : streams_) out.push_back(s);
  return out;
}

void CumulativeTracker::restore(const std::vector<Stream>& streams) {
  for (const Stream& s : streams) {
    if (streams_.size() >= max_streams_ || bytes_ >= max_bytes_) break;
    auto [it, inserted] = streams_.try_emplace(s.key, s);
    if (!inserted) {
      bytes_ -= bytes_of(it->second);
      it->second = s;
    }
    bytes_ += bytes_of(s);
  }
}

}  // namespace gameverse::metrics
