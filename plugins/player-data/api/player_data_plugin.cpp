// gameverse.playerdata.v1.PlayerData: maps the protobuf API onto the player-data domain. The caller
// is the principal the host's gate verified; every method needs a signed-in caller at the gate, and
// the domain checks what that caller may read or change.
#include <dlfcn.h>
#include <unicode/uspoof.h>
#include <unicode/utypes.h>
#include <gameverse/sdk/domain_error.hpp>
#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <chrono>

#include "domain/player_data_service.hpp"
#include "domain/rules.hpp"
#include "gameverse/playerdata/v1/playerdata.pb.h"
#include "infrastructure/store_repository.hpp"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::playerdata::v1;
namespace pd = gameverse::playerdata;
using pd::PlayerDataError;

using sdk::answer;
using sdk::now_unix_ms;

// ICU keeps its caches (normalization and confusable data) in its globals for the life of the
// process; only u_cleanup() frees them, which no plugin may call for the process. Unloaded with
// this plugin at a reload, ICU would lose them, so the libraries stay loaded for good (dlopen with
// RTLD_NODELETE of the copies already mapped) and later generations reuse them.
void keep_icu_loaded() {
  for (const void* symbol :
       {reinterpret_cast<const void*>(&u_errorName), reinterpret_cast<const void*>(&uspoof_open)}) {
    Dl_info info{};
    if (dladdr(symbol, &info) != 0 && info.dli_fname != nullptr) {
      dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    }
  }
}

pd::Limits limits_from(const sdk::Host& host) {
  pd::Limits l;
  l.min_display_name_chars = host.config_int("min_display_name_chars");
  l.max_display_name_chars = host.config_int("max_display_name_chars");
  if (l.min_display_name_chars > l.max_display_name_chars) {
    throw sdk::Error(sdk::StatusCode::kInvalidArgument,
                     "min_display_name_chars is more than max_display_name_chars");
  }
  l.name_change_cooldown_ms = host.config_int("name_change_cooldown_s") * 1000;
  l.reserved_names = sdk::split_list(host.config_string("reserved_names"));
  for (const auto& name : l.reserved_names) {
    if (!pd::valid_utf8(name))
      throw sdk::Error(sdk::StatusCode::kInvalidArgument, "reserved_names: not UTF-8");
  }
  l.player_writable_stats = sdk::split_list(host.config_string("player_writable_stats"));
  for (const auto& pattern : l.player_writable_stats) {
    try {
      pd::check_stat_pattern(pattern, "player_writable_stats: '" + pattern + "'");
    } catch (const PlayerDataError& e) {
      throw sdk::Error(sdk::StatusCode::kInvalidArgument, e.what());
    }
  }
  l.max_writes_per_player_per_minute = host.config_int("max_writes_per_player_per_minute");
  l.max_avatar_bytes = host.config_int("max_avatar_bytes");
  for (std::string h : sdk::split_list(host.config_string("allowed_avatar_hosts"))) {
    for (char& c : h) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    const bool plain = std::all_of(h.begin(), h.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
    });
    if (!plain) {
      throw sdk::Error(sdk::StatusCode::kInvalidArgument,
                       "allowed_avatar_hosts: host names of [a-z0-9.-], comma-separated, not '" + h + "'");
    }
    l.allowed_avatar_hosts.push_back(h);
  }
  l.max_metadata_fields = host.config_int("max_metadata_fields");
  l.max_metadata_key_bytes = host.config_int("max_metadata_key_bytes");
  l.max_metadata_value_bytes = host.config_int("max_metadata_value_bytes");
  l.max_metadata_bytes = host.config_int("max_metadata_bytes");
  l.max_slots_per_player = host.config_int("max_slots_per_player");
  l.max_slot_bytes = host.config_int("max_slot_bytes");
  l.max_slot_bytes_per_player = host.config_int("max_slot_bytes_per_player");
  l.max_stats_per_player = host.config_int("max_stats_per_player");
  l.max_player_writable_stats = host.config_int("max_player_writable_stats");
  l.max_stats_per_request = host.config_int("max_stats_per_request");
  l.max_page_size = host.config_int("max_page_size");
  l.max_write_attempts = host.config_int("max_write_attempts");
  return l;
}

void fill(pb::Profile& out, const pd::Profile& p, bool with_private) {
  out.set_player_id(p.player_id);
  out.set_display_name(p.display_name);
  if (p.avatar.kind == pd::AvatarKind::kUrl) out.set_avatar_url(p.avatar.value);
  if (p.avatar.kind == pd::AvatarKind::kAssetId) out.set_avatar_asset_id(p.avatar.value);
  for (const auto& [key, field] : p.metadata) {
    pb::MetadataField* f = out.add_metadata();
    f->set_key(key);
    f->set_value(field.value);
    f->set_visibility(field.visibility == pd::Visibility::kPublic ? pb::VISIBILITY_PUBLIC
                                                                  : pb::VISIBILITY_PRIVATE);
  }
  if (with_private) out.set_name_changed_unix_ms(p.name_changed_unix_ms);
  out.set_created_unix_ms(p.created_unix_ms);
  out.set_version(p.version);
}

void fill(pb::Slot& out, const pd::Slot& s, bool with_data) {
  out.set_name(s.name);
  if (with_data) out.set_data(s.data);
  out.set_size_bytes(s.size_bytes);
  out.set_version(s.version);
  out.set_updated_unix_ms(s.updated_unix_ms);
}

void fill(pb::Stats& out, const std::string& player_id, const pd::StatSheet& sheet) {
  out.set_player_id(player_id);
  for (const auto& [name, value] : sheet.values) (*out.mutable_values())[name] = value;
  out.set_version(sheet.version);
}

// Store cursors carry bytes; clients get them as hex, text in any protobuf string and in JSON.
std::string cursor_out(const std::string& raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) {
    const auto byte = static_cast<unsigned char>(c);
    out += kHex[byte >> 4];
    out += kHex[byte & 0xf];
  }
  return out;
}

std::string cursor_in(const std::string& text) {
  constexpr size_t kMaxCursorChars = 2048;
  auto nibble = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (text.size() > kMaxCursorChars || text.size() % 2 != 0) {
    throw PlayerDataError(PlayerDataError::Kind::kInvalidArgument,
                          "cursor: not a next_cursor this service gave (at most " +
                              std::to_string(kMaxCursorChars) + " hexadecimal digits)");
  }
  std::string out;
  out.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    const int high = nibble(text[i]);
    const int low = nibble(text[i + 1]);
    if (high < 0 || low < 0) {
      throw PlayerDataError(PlayerDataError::Kind::kInvalidArgument,
                            "cursor: not a next_cursor this service gave (hexadecimal digits only)");
    }
    out += static_cast<char>(high * 16 + low);
  }
  return out;
}

std::string subject_id(const pd::Caller& caller, const std::string& requested) {
  return requested.empty() ? caller.player_id : requested;
}

class PlayerDataPlugin final : public sdk::Plugin {
 public:
  explicit PlayerDataPlugin(sdk::InitContext& init)
      : host_(init.host),
        trusted_plugins_(init.host.config_string("trusted_plugins")),
        profiles_(init.host.store()),
        slots_(init.host.store()),
        stats_(init.host.store()),
        writes_(init.host.cache()),
        conflicts_(init.host.counter("gameverse_player_data_write_conflicts_total",
                                     "Writes that met a concurrent write to the same record, by record and "
                                     "outcome (retried, or aborted after max_write_attempts)",
                                     {"record", "outcome"})),
        service_(
            limits_from(init.host), profiles_, slots_, stats_, now_unix_ms,
            [this](const char* record, bool aborted) {
              conflicts_.record(1, {record, aborted ? "aborted" : "retried"});
            },
            &writes_) {
    keep_icu_loaded();
  }

  // Every method waits on the store, so every one runs on the host's pool for blocking work.
  static void describe(sdk::PluginBuilder<PlayerDataPlugin>& b) {
    b.service("gameverse.playerdata.v1.PlayerData")
        .blocking("GetProfile", &PlayerDataPlugin::get_profile, sdk::kAuthenticated)
        .blocking("SetDisplayName", &PlayerDataPlugin::set_display_name, sdk::kAuthenticated)
        .blocking("UpdateProfile", &PlayerDataPlugin::update_profile, sdk::kAuthenticated)
        // Moderators and admins: the handler checks the role, since the gate holds one role a method.
        .blocking("ResetDisplayName", &PlayerDataPlugin::reset_display_name, sdk::kAuthenticated)
        .blocking("ListPlayers", &PlayerDataPlugin::list_players, sdk::kAuthenticated)
        .blocking("GetSlot", &PlayerDataPlugin::get_slot, sdk::kAuthenticated)
        .blocking("ListSlots", &PlayerDataPlugin::list_slots, sdk::kAuthenticated)
        .blocking("WriteSlot", &PlayerDataPlugin::write_slot, sdk::kAuthenticated)
        .blocking("DeleteSlot", &PlayerDataPlugin::delete_slot, sdk::kAuthenticated)
        .blocking("UpdateStats", &PlayerDataPlugin::update_stats, sdk::kAuthenticated)
        .blocking("GetStats", &PlayerDataPlugin::get_stats, sdk::kAuthenticated)
        // Moderators and admins, checked in the handler as for ResetDisplayName.
        .blocking("ClearProfileFields", &PlayerDataPlugin::clear_profile_fields, sdk::kAuthenticated);
    b.collection("profiles")
        .collection("names")
        .collection("save_slots")
        .collection("usage")
        .collection("stats")
        .collection("name_index");
    b.config_int("min_display_name_chars", 3, "Shortest display name, in characters", sdk::between(1, 64))
        .config_int("max_display_name_chars", 24, "Longest display name, in characters", sdk::between(1, 64))
        .config_int("name_change_cooldown_s", 86400,
                    "Least time between two changes of a player's display name, in seconds (0: none)",
                    sdk::between(0, 366 * 86400))
        .config_string("reserved_names",
                       "admin,administrator,moderator,mod,operator,gameverse,system,support,staff,gm,"
                       "gamemaster,official",
                       "Comma-separated display names nobody may claim, compared as names are (case and "
                       "look-alikes folded), as the whole name and as any word of it")
        .config_int("max_avatar_bytes", 256, "Longest avatar URL, in bytes", sdk::between(16, 2048))
        .config_string("allowed_avatar_hosts", "",
                       "Comma-separated hosts avatar URLs may name (https only, exact host). Empty: avatar "
                       "URLs are refused and avatars are asset ids")
        .config_int("max_metadata_fields", 32, "Metadata fields a profile may have", sdk::between(1, 1000))
        .config_int("max_metadata_key_bytes", 64, "Longest metadata key, in bytes", sdk::between(1, 256))
        .config_int("max_metadata_value_bytes", 1024, "Longest metadata value, in bytes",
                    sdk::between(1, 65536))
        .config_int("max_metadata_bytes", 8192, "Bytes of a profile's metadata keys and values together",
                    sdk::between(1, 512 * 1024))
        .config_int("max_slots_per_player", 10, "Save slots a player may have", sdk::between(1, 10000))
        .config_int("max_slot_bytes", 256 * 1024,
                    "Largest save slot, in bytes (below [store] max_value_bytes)",
                    sdk::between(1, 1024 * 1024))
        .config_int("max_slot_bytes_per_player", 1024 * 1024,
                    "Bytes of all of a player's save slots together",
                    sdk::between(int64_t{1}, int64_t{1} << 40))
        .config_int("max_stats_per_player", 256,
                    "Stats a player may have that admins and trusted plugins write", sdk::between(1, 10000))
        .config_int("max_player_writable_stats", 64,
                    "Stats a player may have that player_writable_stats lists (bounded apart, so that "
                    "players cannot use up max_stats_per_player)",
                    sdk::between(1, 10000))
        .config_int("max_stats_per_request", 64, "Stats one UpdateStats or GetStats call may name",
                    sdk::between(1, 1000))
        .config_int("max_page_size", 100, "Largest page of ListPlayers and ListSlots", sdk::between(1, 1000))
        .config_int("max_write_attempts", 64,
                    "Optimistic tries of a write that meets concurrent writes before it is ABORTED",
                    sdk::between(1, 1000))
        .config_string("trusted_plugins", "",
                       "Comma-separated plugins that may read and write any player's stats when they call "
                       "with their own trust (sdk::as_plugin)")
        .config_string(
            "player_writable_stats", "",
            "Comma-separated stats players may write themselves: names, or prefixes ending in '*'; "
            "every other stat is written by admins and trusted plugins only")
        .config_int(
            "max_writes_per_player_per_minute", 600,
            "Writes (names, profiles, slots, stats) one player may make a minute (0: no limit; admins "
            "and trusted plugins are not counted)",
            sdk::between(0, 1000000));
  }

  sdk::Status get_profile(sdk::CallContext& context, const pb::GetProfileRequest& r, pb::Profile& reply) {
    return answer([&] {
      const pd::Caller caller = caller_of(context);
      const pd::Profile p = service_.profile(caller, r.player_id());
      fill(reply, p, p.player_id == caller.player_id || caller.staff());
    });
  }

  sdk::Status set_display_name(sdk::CallContext& context, const pb::SetDisplayNameRequest& r,
                               pb::Profile& reply) {
    return answer(
        [&] { fill(reply, service_.set_display_name(caller_of(context), r.display_name()), true); });
  }

  sdk::Status update_profile(sdk::CallContext& context, const pb::UpdateProfileRequest& r,
                             pb::Profile& reply) {
    return answer([&] {
      pd::ProfileChange change;
      switch (r.avatar_case()) {
        case pb::UpdateProfileRequest::kAvatarUrl:
          change.avatar = pd::Avatar{pd::AvatarKind::kUrl, r.avatar_url()};
          break;
        case pb::UpdateProfileRequest::kAvatarAssetId:
          change.avatar = pd::Avatar{pd::AvatarKind::kAssetId, r.avatar_asset_id()};
          break;
        case pb::UpdateProfileRequest::kClearAvatar:
          if (r.clear_avatar()) change.avatar = pd::Avatar{};
          break;
        default: break;
      }
      // Bounded before anything is copied.
      const auto max_fields = service_.limits().max_metadata_fields;
      if (r.set_metadata_size() <= max_fields) {
        for (int i = 0; i < r.set_metadata_size(); ++i) {
          const pb::MetadataField& f = r.set_metadata(i);
          if (f.visibility() != pb::VISIBILITY_PUBLIC && f.visibility() != pb::VISIBILITY_PRIVATE) {
            throw PlayerDataError(PlayerDataError::Kind::kInvalidArgument,
                                  "set_metadata[" + std::to_string(i) +
                                      "].visibility: VISIBILITY_PUBLIC or VISIBILITY_PRIVATE");
          }
          change.set_metadata.emplace_back(
              f.key(), pd::MetadataValue{f.value(), f.visibility() == pb::VISIBILITY_PUBLIC
                                                        ? pd::Visibility::kPublic
                                                        : pd::Visibility::kPrivate});
        }
      } else {
        change.set_metadata.resize(static_cast<size_t>(r.set_metadata_size()));  // refused by its count
      }
      if (r.remove_metadata_size() <= max_fields) {
        change.remove_metadata = {r.remove_metadata().begin(), r.remove_metadata().end()};
      } else {
        change.remove_metadata.resize(static_cast<size_t>(r.remove_metadata_size()));
      }
      fill(reply, service_.update_profile(caller_of(context), change), true);
    });
  }

  // A moderation reason goes into the log: one line of text.
  static void check_reason(const std::string& reason) {
    if (reason.size() > 256) {
      throw PlayerDataError(PlayerDataError::Kind::kInvalidArgument,
                            "reason: at most 256 bytes, not " + std::to_string(reason.size()));
    }
    pd::check_plain_text(reason, "reason");
  }

  sdk::Status clear_profile_fields(sdk::CallContext& context, const pb::ClearProfileFieldsRequest& r,
                                   pb::Profile& reply) {
    return answer([&] {
      check_reason(r.reason());
      const pd::Caller caller = caller_of(context);
      std::vector<std::string> keys;
      if (r.remove_metadata_size() <= service_.limits().max_metadata_fields) {
        keys = {r.remove_metadata().begin(), r.remove_metadata().end()};
      } else {
        keys.resize(static_cast<size_t>(r.remove_metadata_size()));
      }
      fill(reply, service_.clear_profile_fields(caller, r.player_id(), r.clear_avatar(), keys), true);
      host_.info("player-data: " + caller.player_id + " cleared " +
                 (r.clear_avatar() ? "the avatar and " : "") + std::to_string(keys.size()) +
                 " metadata fields of player " + r.player_id() +
                 (r.reason().empty() ? "" : "; reason: " + r.reason()));
    });
  }

  sdk::Status reset_display_name(sdk::CallContext& context, const pb::ResetDisplayNameRequest& r,
                                 pb::Profile& reply) {
    return answer([&] {
      check_reason(r.reason());
      constexpr int64_t kMaxHoldSeconds = 100LL * 366 * 86400;
      if (r.hold_seconds() < 0 || r.hold_seconds() > kMaxHoldSeconds) {
        throw PlayerDataError(PlayerDataError::Kind::kInvalidArgument,
                              "hold_seconds: 0 (for good) to " + std::to_string(kMaxHoldSeconds) + ", not " +
                                  std::to_string(r.hold_seconds()));
      }
      const pd::Caller caller = caller_of(context);
      std::string released;
      fill(reply,
           service_.reset_display_name(caller, r.player_id(), r.reason(), r.hold_seconds() * 1000, &released),
           true);
      if (!released.empty()) {
        host_.info("player-data: " + caller.player_id + " reset the display name '" + released +
                   "' of player " + r.player_id() + (r.reason().empty() ? "" : "; reason: " + r.reason()));
      }
    });
  }

  sdk::Status list_players(sdk::CallContext& context, const pb::ListPlayersRequest& r,
                           pb::ListPlayersReply& reply) {
    return answer([&] {
      const pd::NamePage page =
          service_.list_players(caller_of(context), r.prefix(), r.page_size(), cursor_in(r.cursor()));
      for (const auto& n : page.names) {
        pb::PlayerName* out = reply.add_players();
        out->set_player_id(n.player_id);
        out->set_display_name(n.display_name);
      }
      reply.set_next_cursor(cursor_out(page.next_cursor));
    });
  }

  sdk::Status get_slot(sdk::CallContext& context, const pb::GetSlotRequest& r, pb::Slot& reply) {
    return answer([&] { fill(reply, service_.slot(caller_of(context), r.player_id(), r.name()), true); });
  }

  sdk::Status list_slots(sdk::CallContext& context, const pb::ListSlotsRequest& r,
                         pb::ListSlotsReply& reply) {
    return answer([&] {
      pd::Usage usage;
      const pd::SlotPage page =
          service_.slots(caller_of(context), r.player_id(), r.page_size(), cursor_in(r.cursor()), &usage);
      for (const auto& s : page.slots) fill(*reply.add_slots(), s, false);
      reply.set_next_cursor(cursor_out(page.next_cursor));
      reply.set_slot_count(usage.slot_count);
      reply.set_total_bytes(usage.total_bytes);
      reply.set_max_slots(service_.limits().max_slots_per_player);
      reply.set_max_total_bytes(service_.limits().max_slot_bytes_per_player);
    });
  }

  sdk::Status write_slot(sdk::CallContext& context, const pb::WriteSlotRequest& r, pb::Slot& reply) {
    return answer([&] {
      pd::SlotWrite write{r.name(), r.data(), std::nullopt};
      if (r.has_expected_version()) write.expected_version = r.expected_version();
      fill(reply, service_.write_slot(caller_of(context), write), false);
    });
  }

  sdk::Status delete_slot(sdk::CallContext& context, const pb::DeleteSlotRequest& r, pb::DeleteSlotReply&) {
    return answer([&] {
      service_.delete_slot(
          caller_of(context), r.name(),
          r.has_expected_version() ? std::optional<int64_t>(r.expected_version()) : std::nullopt);
    });
  }

  sdk::Status update_stats(sdk::CallContext& context, const pb::UpdateStatsRequest& r, pb::Stats& reply) {
    return answer([&] {
      const pd::Caller caller = caller_of(context);
      std::vector<pd::StatChange> changes;
      if (r.updates_size() <= service_.limits().max_stats_per_request) {
        for (int i = 0; i < r.updates_size(); ++i) {
          const pb::StatUpdate& u = r.updates(i);
          pd::StatChange change;
          change.name = u.name();
          switch (u.change_case()) {
            case pb::StatUpdate::kIncrement:
              change.kind = pd::StatChange::Kind::kIncrement;
              change.value = u.increment();
              break;
            case pb::StatUpdate::kSet:
              change.kind = pd::StatChange::Kind::kSet;
              change.value = u.set();
              break;
            default:
              throw PlayerDataError(PlayerDataError::Kind::kInvalidArgument,
                                    "updates[" + std::to_string(i) + "]: give increment or set");
          }
          changes.push_back(std::move(change));
        }
      } else {
        changes.resize(static_cast<size_t>(r.updates_size()));  // refused by its count
      }
      fill(reply, subject_id(caller, r.player_id()),
           service_.update_stats(caller, r.player_id(), changes, r.request_id()));
    });
  }

  sdk::Status get_stats(sdk::CallContext& context, const pb::GetStatsRequest& r, pb::Stats& reply) {
    return answer([&] {
      const pd::Caller caller = caller_of(context);
      std::vector<std::string> names;
      if (r.names_size() <= service_.limits().max_stats_per_request) {
        names = {r.names().begin(), r.names().end()};
      } else {
        names.resize(static_cast<size_t>(r.names_size()));
      }
      fill(reply, subject_id(caller, r.player_id()), service_.stats(caller, r.player_id(), names));
    });
  }

 private:
  // The caller as the domain sees it. A plugin calling with its own trust counts only when
  // trusted_plugins names it. A listed plugin acting for a signed-in player (a call it made for its
  // own caller) writes that player's stats, and only theirs.
  pd::Caller caller_of(const sdk::CallContext& context) const {
    if (const std::string_view own = context.plugin_with_own_trust(); !own.empty()) {
      if (!trusted_plugins_.contains(own)) {
        throw PlayerDataError(
            PlayerDataError::Kind::kPermissionDenied,
            "plugin '" + std::string(own) + "' calls with its own trust but is not in trusted_plugins");
      }
      return {"", {}, std::string(own)};
    }
    const sdk::Principal principal = context.principal();
    if (principal.anonymous()) return {};  // the domain answers UNAUTHENTICATED
    const std::string_view plugin = context.calling_plugin();
    return {principal.user_id, principal.roles, "",
            trusted_plugins_.contains(plugin) ? std::string(plugin) : ""};
  }

  sdk::Host host_;
  sdk::TrustedPlugins trusted_plugins_;
  pd::StoreProfiles profiles_;
  pd::StoreSlots slots_;
  pd::StoreStats stats_;
  pd::CacheWriteCounter writes_;
  sdk::Metric conflicts_;
  pd::PlayerDataService service_;
};

}  // namespace

GAMEVERSE_PLUGIN(PlayerDataPlugin, "player-data", "0.1.0", "Player profiles, save slots and stats")
