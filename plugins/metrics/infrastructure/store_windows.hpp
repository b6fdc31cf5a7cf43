// Window aggregates and metric families over the host's document store. Records are those of
// proto/gameverse/metrics/records/v1/records.proto (beside this file):
//   w10s, w1m, w1h/<metric>|<window start, 12 digits>|<writer>-<n>   WindowRecord
//   families/<metric>                                               FamilyRecord
// Keys of one metric sort by window start, so a time range is a few prefix listings
// (decimal_prefixes). A flush writes new keys only, never reads: late data, another host or the
// next generation add entries that queries add up.
#pragma once

#include <gameverse/sdk/plugin.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "domain/model.hpp"
#include "gameverse/metrics/records/v1/records.pb.h"

namespace gameverse::metrics {

namespace rec = ::gameverse::metrics::records::v1;

rec::WindowRecord record_of(const WindowEntry& entry);
WindowEntry entry_of(size_t resolution, const rec::WindowRecord& record);
rec::FamilyRecord family_record(const Family& family);
Family family_of(const rec::FamilyRecord& record);

class StoreWindows {
 public:
  StoreWindows(sdk::Store store, std::vector<Resolution> resolutions, std::string writer)
      : store_(store), resolutions_(std::move(resolutions)), writer_(std::move(writer)) {}

  struct WriteResult {
    std::vector<WindowEntry> failed;  // the store could not take them now: to be retried
    std::vector<Family> failed_families;
    std::string error;     // the first such failure
    size_t set_aside = 0;  // refused for what they hold (too large, invalid): never retried
    std::string set_aside_reason;
  };
  // Writes the families and entries in batches of at most kBatchWrites. A batch the store refuses
  // as invalid is written one record at a time, and the records it still refuses are set aside,
  // so one bad record can neither block the rest nor make the store look down.
  WriteResult write(std::vector<WindowEntry> entries, const std::vector<Family>& families);
  std::vector<WindowEntry> read(size_t resolution, const std::string& metric, int64_t from_s, int64_t to_s,
                                size_t max_entries) const;
  // Deletes the metric's windows that started before `cutoff_s`; returns how many.
  size_t erase_before(size_t resolution, const std::string& metric, int64_t cutoff_s) const;
  std::vector<Family> families() const;

 private:
  sdk::Store store_;
  std::vector<Resolution> resolutions_;
  std::string writer_;
  std::atomic<uint64_t> written_{0};
};

}  // namespace gameverse::metrics
