#include "infrastructure/chat_store.hpp"

#include <chrono>
#include <random>
#include <thread>

#include "domain/channel.hpp"

namespace gameverse::chat {

std::optional<sdk::Record<rec::ChannelRecord>> ChatStore::channel(const std::string& id) const {
  return store_.get<rec::ChannelRecord>(kChannels, id);
}

std::optional<sdk::Record<rec::MemberRecord>> ChatStore::member(const std::string& channel,
                                                                const std::string& player) const {
  return store_.get<rec::MemberRecord>(kMembers, member_key(channel, player));
}

uint64_t ChatStore::head(const std::string& channel) const {
  const auto head = store_.get<rec::HeadRecord>(kHeads, channel);
  return head ? head->value.seq() : 0;
}

std::optional<sdk::Record<rec::EventRecord>> ChatStore::event(const std::string& channel,
                                                              uint64_t seq) const {
  return store_.get<rec::EventRecord>(kEvents, event_key(channel, seq));
}

bool ChatStore::blocked(const std::string& player, const std::string& other) const {
  return store_.get(kBlocks, player + "/" + other).has_value();
}

std::vector<rec::EventRecord> ChatStore::events(const std::string& channel, uint64_t first,
                                                uint64_t last) const {
  std::vector<rec::EventRecord> out;
  if (first == 0) first = 1;
  // Blocks of 100 seqs share a key prefix: one listing each.
  for (uint64_t block = first / 100 * 100; block <= last; block += 100) {
    sdk::Store::Query query;
    query.collection = kEvents;
    query.key_prefix = event_block_prefix(channel, block);
    query.limit = 100;
    for (;;) {
      auto page = store_.list<rec::EventRecord>(query);
      for (auto& record : page.records) {
        const uint64_t seq = record.value.seq();
        if (seq >= first && seq <= last) out.push_back(std::move(record.value));
      }
      if (page.next_cursor.empty()) break;
      query.cursor = page.next_cursor;
    }
  }
  return out;
}

void ChatStore::with_retries(const std::string& what, const std::function<void()>& attempt) const {
  thread_local std::minstd_rand random(std::random_device{}());
  for (int tries = 0;; ++tries) {
    try {
      attempt();
      return;
    } catch (const sdk::Error& e) {
      const bool conflict =
          e.code() == sdk::StatusCode::kAborted || e.code() == sdk::StatusCode::kAlreadyExists;
      if (!conflict) throw;
      if (tries >= max_conflict_retries_) {
        throw sdk::Error(sdk::StatusCode::kAborted,
                         what + " met " + std::to_string(tries + 1) + " concurrent changes; retry");
      }
    }
    // Jittered, growing: concurrent writers to one head spread out.
    const int ceiling_us = 200 << std::min(tries, 6);
    std::this_thread::sleep_for(std::chrono::microseconds(random() % static_cast<unsigned>(ceiling_us)));
  }
}

rec::EventRecord ChatStore::append(
    const std::string& channel, bool ephemeral, rec::EventRecord event,
    const std::function<void(sdk::Store::Batch&, rec::EventRecord&)>& build) const {
  rec::EventRecord stored;
  with_retries("a message to " + channel, [&] {
    const auto head = store_.get<rec::HeadRecord>(kHeads, channel);
    rec::HeadRecord next;
    next.set_seq((head ? head->value.seq() : 0) + 1);
    stored = event;
    stored.set_seq(next.seq());
    sdk::Store::Batch batch;
    batch.put(kHeads, channel, next, head ? head->version : sdk::Store::kCreateOnly);
    if (build) build(batch, stored);
    batch.put(kEvents, event_key(channel, stored.seq()), stored, sdk::Store::kCreateOnly,
              ephemeral ? kEphemeralOwner : "");
    store_.commit(batch);
  });
  return stored;
}

}  // namespace gameverse::chat
