#include "infrastructure/store_repository.hpp"

#include <algorithm>
#include <chrono>

#include "gameverse/chat/records/v1/records.pb.h"

namespace gameverse::chat {

namespace {

namespace rec = gameverse::chat::records::v1;

constexpr const char* kChannels = "channels";
constexpr const char* kHeads = "heads";
constexpr const char* kEvents = "events";
constexpr const char* kMembers = "members";
constexpr const char* kBlocks = "blocks";
constexpr const char* kSent = "sent";
constexpr const char* kPresence = "presence";
// The owner of an ephemeral channel's events, and of send ids: what the sweep lists.
constexpr const char* kEphemeralOwner = "ephemeral";
// Pages of 500 keys a sweep reads per collection before it leaves the rest to its next run.
constexpr int kSweepPagesPerRun = 100;

int64_t store_version(int64_t version) {
  return version == kAnyVersion ? sdk::Store::kAnyVersion : version;
}

std::string member_key(const std::string& channel, const std::string& player) {
  return channel + "/" + player;
}

Channel channel_of(const rec::ChannelRecord& r) {
  Channel c;
  c.kind = static_cast<ChannelKind>(r.kind());
  c.name = r.name();
  c.retention = r.retention() == static_cast<uint32_t>(Retention::kEphemeral) ? Retention::kEphemeral
                                                                              : Retention::kPersistent;
  c.owner_id = r.owner_id();
  c.member_count = r.member_count();
  c.created_unix_ms = r.created_unix_ms();
  return c;
}

rec::ChannelRecord record_of(const Channel& c) {
  rec::ChannelRecord r;
  r.set_kind(static_cast<uint32_t>(c.kind));
  r.set_name(c.name);
  r.set_retention(static_cast<uint32_t>(c.retention));
  r.set_owner_id(c.owner_id);
  r.set_member_count(c.member_count);
  r.set_created_unix_ms(c.created_unix_ms);
  return r;
}

Member member_of(const rec::MemberRecord& r) {
  Member m;
  m.role = static_cast<Role>(std::clamp<uint32_t>(r.role(), 1, 3));
  m.muted_until_unix_ms = r.muted_until_unix_ms();
  m.banned = r.banned();
  m.joined = r.joined();
  m.joined_unix_ms = r.joined_unix_ms();
  m.added_by_other = r.added_by_other();
  return m;
}

rec::MemberRecord record_of(const Member& m) {
  rec::MemberRecord r;
  r.set_role(static_cast<uint32_t>(m.role));
  r.set_muted_until_unix_ms(m.muted_until_unix_ms);
  r.set_banned(m.banned);
  r.set_joined(m.joined);
  r.set_joined_unix_ms(m.joined_unix_ms);
  r.set_added_by_other(m.added_by_other);
  return r;
}

Event event_of(const rec::EventRecord& r) {
  Event e;
  e.seq = r.seq();
  e.type = static_cast<EventType>(r.type());
  e.sender_id = r.sender_id();
  e.text = r.text();
  e.sent_unix_ms = r.sent_unix_ms();
  e.target_seq = r.target_seq();
  e.edited = r.edited();
  e.deleted = r.deleted();
  if (r.moderation() != 0) e.moderation = static_cast<Moderation>(r.moderation());
  e.subject_id = r.subject_id();
  e.edit_seqs.assign(r.edit_seqs().begin(), r.edit_seqs().end());
  e.client_message_id = r.client_message_id();
  return e;
}

rec::EventRecord record_of(const Event& e) {
  rec::EventRecord r;
  r.set_seq(e.seq);
  r.set_type(static_cast<uint32_t>(e.type));
  r.set_sender_id(e.sender_id);
  r.set_text(e.text);
  r.set_sent_unix_ms(e.sent_unix_ms);
  r.set_target_seq(e.target_seq);
  r.set_edited(e.edited);
  r.set_deleted(e.deleted);
  r.set_moderation(e.moderation ? static_cast<uint32_t>(*e.moderation) : 0);
  r.set_subject_id(e.subject_id);
  for (uint64_t seq : e.edit_seqs) r.add_edit_seqs(seq);
  r.set_client_message_id(e.client_message_id);
  return r;
}

}  // namespace

std::optional<Versioned<Channel>> StoreRepository::channel(const std::string& id) {
  auto r = store_.get<rec::ChannelRecord>(kChannels, id);
  if (!r) return std::nullopt;
  return Versioned<Channel>{channel_of(r->value), r->version};
}

std::optional<Versioned<Member>> StoreRepository::member(const std::string& channel,
                                                         const std::string& player) {
  auto r = store_.get<rec::MemberRecord>(kMembers, member_key(channel, player));
  if (!r) return std::nullopt;
  return Versioned<Member>{member_of(r->value), r->version};
}

Versioned<uint64_t> StoreRepository::head(const std::string& channel) {
  const auto head = store_.get<rec::HeadRecord>(kHeads, channel);
  if (!head) return {0, kCreateOnly};
  return {head->value.seq(), head->version};
}

std::optional<Versioned<Event>> StoreRepository::event(const std::string& channel, uint64_t seq) {
  auto r = store_.get<rec::EventRecord>(kEvents, event_key(channel, seq));
  if (!r) return std::nullopt;
  return Versioned<Event>{event_of(r->value), r->version};
}

std::vector<Event> StoreRepository::events(const std::string& channel, uint64_t first, uint64_t last) {
  std::vector<Event> out;
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
        if (seq >= first && seq <= last) out.push_back(event_of(record.value));
      }
      if (page.next_cursor.empty()) break;
      query.cursor = page.next_cursor;
    }
  }
  return out;
}

std::optional<SentRecord> StoreRepository::sent(const std::string& key) {
  auto r = store_.get<rec::SentRecord>(kSent, key);
  if (!r) return std::nullopt;
  return SentRecord{r->value.seq(), r->value.text_digest()};
}

bool StoreRepository::commit(const ChangeSet& changes) {
  sdk::Store::Batch batch;
  if (changes.head) {
    rec::HeadRecord head;
    head.set_seq(changes.head->seq);
    batch.put(kHeads, changes.head->channel_id, head, store_version(changes.head->expected_version));
  }
  for (const auto& c : changes.channels) {
    batch.put(kChannels, c.channel_id, record_of(c.channel), store_version(c.expected_version),
              c.channel.owner_id);
  }
  for (const auto& m : changes.members) {
    const std::string key = member_key(m.channel_id, m.player_id);
    if (m.erase) {
      batch.erase(kMembers, key, store_version(m.expected_version));
    } else {
      batch.put(kMembers, key, record_of(m.member), store_version(m.expected_version), m.player_id);
    }
  }
  if (changes.sent) {
    rec::SentRecord sent;
    sent.set_seq(changes.sent->seq);
    sent.set_sent_unix_ms(changes.sent->sent_unix_ms);
    sent.set_text_digest(changes.sent->text_digest);
    batch.put(kSent, changes.sent->key, sent, sdk::Store::kCreateOnly, kSent);
  }
  for (const auto& e : changes.events) {
    batch.put(kEvents, event_key(e.channel_id, e.event.seq), record_of(e.event),
              store_version(e.expected_version), e.ephemeral ? kEphemeralOwner : "");
  }
  try {
    store_.commit(batch);
  } catch (const sdk::Error& e) {
    if (e.code() == sdk::StatusCode::kAborted || e.code() == sdk::StatusCode::kAlreadyExists) return false;
    throw;
  }
  return true;
}

std::vector<std::string> StoreRepository::memberships(const std::string& player, size_t stop_after,
                                                      bool own_only) {
  std::vector<std::string> out;
  sdk::Store::Query query;
  query.collection = kMembers;
  query.owner = player;
  query.limit = 500;
  for (;;) {
    auto page = store_.list<rec::MemberRecord>(query);
    for (const auto& record : page.records) {
      if (!record.value.joined() || (own_only && record.value.added_by_other())) continue;
      out.push_back(record.key.substr(0, record.key.size() - player.size() - 1));
    }
    if (page.next_cursor.empty() || out.size() > stop_after) break;
    query.cursor = page.next_cursor;
  }
  return out;
}

size_t StoreRepository::channels_owned(const std::string& player, size_t stop_after) {
  size_t count = 0;
  sdk::Store::Query query;
  query.collection = kChannels;
  query.owner = player;
  query.limit = 500;
  for (;;) {
    auto page = store_.list<rec::ChannelRecord>(query);
    for (const auto& record : page.records) {
      if (record.value.kind() != static_cast<uint32_t>(ChannelKind::kDirect)) ++count;
    }
    if (page.next_cursor.empty() || count > stop_after) break;
    query.cursor = page.next_cursor;
  }
  return count;
}

Page<MemberView> StoreRepository::members(const std::string& channel, const std::string& cursor,
                                          uint32_t limit) {
  sdk::Store::Query query;
  query.collection = kMembers;
  query.key_prefix = channel + "/";
  query.cursor = cursor;
  query.limit = limit;
  auto page = store_.list<rec::MemberRecord>(query);
  Page<MemberView> out;
  for (const auto& record : page.records) {
    out.items.push_back({record.key.substr(query.key_prefix.size()), member_of(record.value)});
  }
  out.next_cursor = page.next_cursor;
  return out;
}

bool StoreRepository::blocked(const std::string& player, const std::string& other) {
  return store_.get(kBlocks, player + "/" + other).has_value();
}

size_t StoreRepository::blocks(const std::string& player, size_t stop_after) {
  sdk::Store::Query query;
  query.collection = kBlocks;
  query.key_prefix = player + "/";
  query.limit = static_cast<uint32_t>(std::min<size_t>(stop_after + 1, 1000));
  size_t count = 0;
  for (;;) {
    auto page = store_.list(query);
    count += page.objects.size();
    if (page.next_cursor.empty() || count > stop_after) break;
    query.cursor = page.next_cursor;
  }
  return count;
}

void StoreRepository::block(const std::string& player, const std::string& other, int64_t since_unix_ms) {
  rec::BlockRecord record;
  record.set_since_unix_ms(since_unix_ms);
  store_.put(kBlocks, player + "/" + other, record, sdk::Store::kAnyVersion, player);
}

void StoreRepository::unblock(const std::string& player, const std::string& other) {
  store_.erase(kBlocks, player + "/" + other);
}

Page<HostPresence> StoreRepository::presence(const std::string& cursor, uint32_t limit) {
  sdk::Store::Query query;
  query.collection = kPresence;
  query.cursor = cursor;
  query.limit = limit;
  auto page = store_.list<rec::PresenceRecord>(query);
  Page<HostPresence> out;
  for (const auto& host : page.records) {
    HostPresence p;
    p.host_id = host.key;
    p.expires_unix_ms = host.value.expires_unix_ms();
    for (const auto& subscribed : host.value.channels()) {
      p.players_by_channel[subscribed.channel_id()].insert(subscribed.player_ids().begin(),
                                                           subscribed.player_ids().end());
    }
    out.items.push_back(std::move(p));
  }
  out.next_cursor = page.next_cursor;
  return out;
}

void StoreRepository::write_presence(const HostPresence& presence) {
  rec::PresenceRecord record;
  for (const auto& [channel, players] : presence.players_by_channel) {
    auto* entry = record.add_channels();
    entry->set_channel_id(channel);
    for (const auto& p : players) entry->add_player_ids(p);
  }
  record.set_expires_unix_ms(presence.expires_unix_ms);
  store_.put(kPresence, presence.host_id, record);
}

void StoreRepository::sweep(int64_t now, int64_t ephemeral_retention_ms, int64_t send_id_retention_ms) {
  std::lock_guard lock(sweep_mu_);
  const auto drop_older = [&](const char* collection, const char* owner, int64_t max_age_ms,
                              std::string& cursor) {
    sdk::Store::Query query;
    query.collection = collection;
    query.owner = owner;
    query.limit = 500;
    query.cursor = cursor;
    cursor.clear();  // the end reached: the next run starts over
    for (int pages = 0; pages < kSweepPagesPerRun; ++pages) {
      auto page = store_.list(query);
      sdk::Store::Batch batch;
      for (const auto& object : page.objects) {
        if (object.created_unix_ms < now - max_age_ms) batch.erase(collection, object.key, object.version);
      }
      if (!batch.empty()) {
        try {
          store_.commit(batch);
        } catch (const sdk::Error&) {
          // Another host swept them, or one changed: the next sweep sees.
        }
      }
      if (page.next_cursor.empty()) return;
      query.cursor = page.next_cursor;
    }
    cursor = query.cursor;
  };
  drop_older(kEvents, kEphemeralOwner, ephemeral_retention_ms, events_sweep_cursor_);
  drop_older(kSent, kSent, send_id_retention_ms, sent_sweep_cursor_);
  sdk::Store::Query query;
  query.collection = kPresence;
  query.limit = 1000;
  auto page = store_.list<rec::PresenceRecord>(query);
  for (const auto& host : page.records) {
    if (host.value.expires_unix_ms() < now - 60000) {
      try {
        store_.erase(kPresence, host.key, host.version);
      } catch (const sdk::Error&) {
      }
    }
  }
}

int64_t CacheCounters::increment(const std::string& key, int64_t ttl_seconds) {
  return cache_.increment(key, 1, std::chrono::seconds(ttl_seconds));
}

}  // namespace gameverse::chat
