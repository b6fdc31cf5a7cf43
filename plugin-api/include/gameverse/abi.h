/*
 * gameverse/abi.h — the C ABI between the GameVerse host and its plugins.
 *
 * This header is the whole contract. It compiles as C99 and as C++, includes nothing but
 * <stdint.h>, <stddef.h> and <stdbool.h>, and no C++ type, exception or allocator crosses it.
 *
 * Prefixes: gv_ for types, gv_on_ for hooks a plugin implements, gv_host_ for functions the
 * host implements and hands to the plugin in gv_host_api.
 *
 * Evolution rules (read before changing anything here):
 *   1. Every struct that crosses starts with `size_t struct_size`, set by whoever fills it in.
 *      A reader never touches a field that lies beyond the struct_size it was given.
 *   2. Structs and function tables are append-only: new fields and functions go at the end,
 *      and every addition bumps GV_ABI_VERSION_MINOR. A field is never removed or retyped.
 *   3. A changed signature gets a new numbered name (log2, not a changed log).
 *   4. A break bumps GV_ABI_VERSION_MAJOR, which renames the entry symbol (gv_plugin_entry_v2),
 *      so that an old host never calls into a new plugin by accident.
 *   5. The host and the plugin agree on the minor version min(host, plugin) at load time.
 *   6. plugin-api/abi.lock records the SHA-256 of this file for each version; a test fails
 *      when the file changes and the version does not.
 *
 * Errors cross as a gRPC canonical status code plus a message. Exceptions never cross.
 */
#ifndef GAMEVERSE_ABI_H
#define GAMEVERSE_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GV_ABI_VERSION_MAJOR 1
#define GV_ABI_VERSION_MINOR 4

/* The one symbol a plugin exports. Its name carries the ABI major version. */
#define GV_PLUGIN_ENTRY_SYMBOL "gv_plugin_entry_v1"

/* ---------------------------------------------------------------------------------------------
 * Plain values
 * ------------------------------------------------------------------------------------------- */

/* gRPC canonical status codes; the values are gRPC's, so they map one to one onto grpc::Status. */
typedef int32_t gv_status_code;
enum {
  GV_STATUS_OK = 0,
  GV_STATUS_CANCELLED = 1,
  GV_STATUS_UNKNOWN = 2,
  GV_STATUS_INVALID_ARGUMENT = 3,
  GV_STATUS_DEADLINE_EXCEEDED = 4,
  GV_STATUS_NOT_FOUND = 5,
  GV_STATUS_ALREADY_EXISTS = 6,
  GV_STATUS_PERMISSION_DENIED = 7,
  GV_STATUS_RESOURCE_EXHAUSTED = 8,
  GV_STATUS_FAILED_PRECONDITION = 9,
  GV_STATUS_ABORTED = 10,
  GV_STATUS_OUT_OF_RANGE = 11,
  GV_STATUS_UNIMPLEMENTED = 12,
  GV_STATUS_INTERNAL = 13,
  GV_STATUS_UNAVAILABLE = 14,
  GV_STATUS_DATA_LOSS = 15,
  GV_STATUS_UNAUTHENTICATED = 16
};

/* The four gRPC call kinds. Zero is not a kind. */
typedef int32_t gv_call_kind;
enum {
  GV_CALL_UNARY = 1,
  GV_CALL_SERVER_STREAMING = 2,
  GV_CALL_CLIENT_STREAMING = 3,
  GV_CALL_BIDI_STREAMING = 4
};

typedef int32_t gv_log_level;
enum { GV_LOG_TRACE = 1, GV_LOG_DEBUG = 2, GV_LOG_INFO = 3, GV_LOG_WARN = 4, GV_LOG_ERROR = 5 };

/* Types a plugin's config key can have; they are TOML's. */
typedef int32_t gv_config_type;
enum {
  GV_CONFIG_STRING = 1,
  GV_CONFIG_INT = 2,    /* int64_t */
  GV_CONFIG_DOUBLE = 3, /* a TOML integer is accepted where a double is declared */
  GV_CONFIG_BOOL = 4
};

/* A run of bytes. Not NUL-terminated.
 * Ownership: borrowed; whoever passes it says for how long it stays valid. */
typedef struct gv_bytes {
  const uint8_t* data;
  size_t size;
} gv_bytes;

/* Where a hook writes an error message for the host.
 * Ownership: owned by the host, writable only during the hook that received it. The plugin
 * writes at most `capacity` bytes including a terminating NUL (truncating as needed). */
typedef struct gv_message_buffer {
  char* data;
  size_t capacity;
} gv_message_buffer;

/* Where the receiver of some bytes (a saved state, a cached value, a cursor) has them appended.
 * Ownership: owned by whoever passes it, valid only during the call it is passed to; append copies
 * the bytes. */
typedef struct gv_byte_sink gv_byte_sink;
struct gv_byte_sink {
  size_t struct_size;
  void (*append)(gv_byte_sink* sink, const uint8_t* data, size_t size);
};
/* The name of gv_byte_sink before ABI 1.2; the same type. */
typedef gv_byte_sink gv_state_sink;

/* ---------------------------------------------------------------------------------------------
 * Opaque handles (defined by the host; a plugin only passes them back)
 * ------------------------------------------------------------------------------------------- */

/* The host's record of one loaded plugin generation.
 * Ownership: owned by the host; valid from gv_on_init until gv_on_shutdown returns. */
typedef struct gv_host_plugin gv_host_plugin;

/* One RPC in flight. The host owns the stream; the plugin refers to it by this handle.
 * Ownership: owned by the host; valid from gv_on_call_start (or gv_on_call_adopt) until
 * gv_on_call_release returns. A call that moves to a new generation gets a new handle there. */
typedef struct gv_call gv_call;

/* ---------------------------------------------------------------------------------------------
 * What the host tells the plugin about itself
 * ------------------------------------------------------------------------------------------- */

typedef struct gv_host_info {
  size_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor;
  const char* host_version; /* Ownership: owned by the host, static. */
  /* 1.2: where an entry function that returns NULL says why (a mistake in the plugin's
   * declarations, an unsupported host), so that the host can log it. Read it only when
   * struct_size reaches it. Ownership: owned by the host, writable during the entry call. */
  gv_message_buffer entry_error;
} gv_host_info;

/* The authenticated caller. Empty (size 0 fields, role_count 0) for anonymous calls.
 * Ownership: every pointer is owned by the host and valid until the call's release. */
typedef struct gv_principal {
  size_t struct_size;
  gv_bytes user_id;
  gv_bytes session_id;
  const gv_bytes* roles;
  size_t role_count;
} gv_principal;

/* ---------------------------------------------------------------------------------------------
 * The host's function table: everything a plugin can reach in the host.
 * Append-only: a plugin checks struct_size (or the negotiated minor) before using a later field.
 * ------------------------------------------------------------------------------------------- */

typedef void (*gv_host_log_fn)(gv_host_plugin* self, gv_log_level level, const char* message,
                               size_t message_size);
typedef bool (*gv_host_log_enabled_fn)(gv_host_plugin* self, gv_log_level level);

/* Config access. The host has already checked the plugin's table against its declared schema
 * and filled in defaults, so a declared key always has a value of the declared type. Each
 * returns false when the key is not declared or has another type.
 * Ownership of a string's bytes: owned by the host, valid until gv_on_shutdown returns. */
typedef bool (*gv_host_config_string_fn)(gv_host_plugin* self, const char* key, gv_bytes* out);
typedef bool (*gv_host_config_int_fn)(gv_host_plugin* self, const char* key, int64_t* out);
typedef bool (*gv_host_config_double_fn)(gv_host_plugin* self, const char* key, double* out);
typedef bool (*gv_host_config_bool_fn)(gv_host_plugin* self, const char* key, bool* out);

/* Sends one response message; the host copies the bytes before returning, so the caller keeps
 * ownership of data. Safe from any thread. Unary and client-streaming methods send exactly one.
 * Returns GV_STATUS_OK, GV_STATUS_CANCELLED when the client has gone, or
 * GV_STATUS_FAILED_PRECONDITION when the call is already finished or a second unary response
 * is sent. */
typedef gv_status_code (*gv_host_call_send_fn)(gv_call* call, const uint8_t* data, size_t size);

/* Ends the call with a status; the message is copied. Every call the host starts must be
 * finished exactly once, also after a cancel. Safe from any thread. After it the plugin may not
 * send again; the handle stays valid until gv_on_call_release.
 * Returns GV_STATUS_FAILED_PRECONDITION when the call was already finished. */
typedef gv_status_code (*gv_host_call_finish_fn)(gv_call* call, gv_status_code code, const char* message,
                                                 size_t message_size);

/* The client's deadline in milliseconds since the Unix epoch, INT64_MAX when it set none. */
typedef int64_t (*gv_host_call_deadline_fn)(gv_call* call);

/* True once the client cancelled or the deadline passed. */
typedef bool (*gv_host_call_is_cancelled_fn)(gv_call* call);

/* Fills up to max_values values of request metadata `key` (lower case) into values and returns
 * how many the call carries (which may be more than max_values).
 * Ownership of the bytes: owned by the host, valid until the call's release. */
typedef size_t (*gv_host_call_metadata_fn)(gv_call* call, const char* key, gv_bytes* values,
                                           size_t max_values);

/* Fills *out with the caller's principal; out->struct_size must be set by the plugin. */
typedef void (*gv_host_call_principal_fn)(gv_call* call, gv_principal* out);

/* The full method name of the call, "/package.Service/Method".
 * Ownership: owned by the host, valid until the call's release. */
typedef gv_bytes (*gv_host_call_method_fn)(gv_call* call);

/* The client's address as gRPC names it: "ipv4:127.0.0.1:53211", "ipv6:[::1]:53211", "unix:...".
 * Ownership: owned by the host, valid until the call's release. */
typedef gv_bytes (*gv_host_call_peer_fn)(gv_call* call);

/* Who made a call (1.3). A call from the network (gRPC, or the HTTP gateway for a client) is
 * GV_CALL_ORIGIN_NETWORK; a call another plugin made in process (peer "inproc:<plugin>") is
 * GV_CALL_ORIGIN_FOR_CALLER when it acts for the caller of that plugin's handler (principal is that
 * caller, who met the method's access policy) and GV_CALL_ORIGIN_PLUGIN when the plugin called with
 * its own trust (no principal; the access policy was not applied). Zero is not an origin. */
typedef int32_t gv_call_origin;
enum { GV_CALL_ORIGIN_NETWORK = 1, GV_CALL_ORIGIN_FOR_CALLER = 2, GV_CALL_ORIGIN_PLUGIN = 3 };
typedef gv_call_origin (*gv_host_call_origin_fn)(gv_call* call);

/* --- The document store ------------------------------------------------------------------------
 * Objects live in the plugin's own collections (declared in its descriptor), keyed by bytes, with
 * a value, an owner (a player id, or empty), a version for optimistic concurrency and times.
 * The same calls work on every backend the host is configured with (SQLite, PostgreSQL). */

/* expected_version of a write: GV_STORE_ANY_VERSION writes over whatever is there; 0 creates only
 * (GV_STATUS_ALREADY_EXISTS if the key exists); N > 0 writes only over version N
 * (GV_STATUS_ABORTED otherwise, and the whole batch changes nothing). */
#define GV_STORE_ANY_VERSION (-1)

typedef int32_t gv_store_write_kind;
enum { GV_STORE_PUT = 1, GV_STORE_DELETE = 2 };

/* Ownership: every pointer borrowed for the duration of the callback that receives it. */
typedef struct gv_store_object {
  size_t struct_size;
  gv_bytes collection;
  gv_bytes key;
  gv_bytes value;
  gv_bytes owner;
  int64_t version; /* 1 on create, +1 on every put */
  int64_t created_unix_ms;
  int64_t updated_unix_ms;
} gv_store_object;

/* Ownership: borrowed for the call. */
typedef struct gv_store_write {
  size_t struct_size;
  gv_store_write_kind kind;
  gv_bytes collection;
  gv_bytes key;   /* 1 .. 512 bytes */
  gv_bytes value; /* at most the host's max_value_bytes; ignored by deletes */
  gv_bytes owner; /* at most 128 bytes; ignored by deletes */
  int64_t expected_version;
} gv_store_write;

/* Ownership: borrowed for the call. */
typedef struct gv_store_query {
  size_t struct_size;
  gv_bytes collection;
  gv_bytes key_prefix; /* empty: every key */
  gv_bytes owner;      /* empty: any owner */
  gv_bytes cursor;     /* empty: the first page; else the cursor the previous page returned */
  uint32_t limit;      /* 1 .. 1000; 0 means 100 */
} gv_store_query;

/* Receives objects. Ownership of object: borrowed for the call. */
typedef void (*gv_store_visit_fn)(void* context, const gv_store_object* object);

/* Reads one object into visit; GV_STATUS_NOT_FOUND when the key is absent. */
typedef gv_status_code (*gv_host_store_get_fn)(gv_host_plugin* self, gv_bytes collection, gv_bytes key,
                                               gv_store_visit_fn visit, void* context,
                                               gv_message_buffer error);

/* Applies every write or none. new_versions (NULL, or room for count) receives each write's new
 * version (0 for a delete). Errors: ABORTED, ALREADY_EXISTS, INVALID_ARGUMENT (bad key, value,
 * owner or collection: the message names which), UNAVAILABLE (the backend is down; nothing was
 * written). */
typedef gv_status_code (*gv_host_store_write_fn)(gv_host_plugin* self, const gv_store_write* writes,
                                                 size_t count, int64_t* new_versions,
                                                 gv_message_buffer error);

/* Lists objects in byte-wise key order into visit; the cursor of the next page goes to
 * next_cursor (nothing is appended on the last page). A cursor is tamper-evident and valid only
 * for the query that produced it (INVALID_ARGUMENT otherwise) and for this host's lifetime. */
typedef gv_status_code (*gv_host_store_list_fn)(gv_host_plugin* self, const gv_store_query* query,
                                                gv_store_visit_fn visit, void* context,
                                                gv_byte_sink* next_cursor, gv_message_buffer error);

/* --- Timers ---------------------------------------------------------------------------------------
 * Run on a host thread; a callback must not block for long. A generation's timers are cancelled by
 * the host before its gv_on_shutdown. */
typedef void (*gv_timer_fn)(void* context);

/* Starts a timer: first after delay_ms, then every period_ms (0: once). Periodic timers keep their
 * rate: each run is due one period after the previous one was due, not after it ran. Returns the
 * timer's id (> 0), or 0 with a message in error. Ownership of context: the plugin's. */
typedef uint64_t (*gv_host_timer_start_fn)(gv_host_plugin* self, uint64_t delay_ms, uint64_t period_ms,
                                           gv_timer_fn fn, void* context, gv_message_buffer error);

/* Cancels a timer. When it returns, the callback is not running and will not run again (unless
 * called from that very callback, which then finishes its run). Unknown ids are ignored. */
typedef void (*gv_host_timer_cancel_fn)(gv_host_plugin* self, uint64_t timer_id);

/* --- Metrics --------------------------------------------------------------------------------------
 * Kept in the host's registry with a `plugin` label; they survive hot reload of the plugin. */
typedef int32_t gv_metric_kind;
enum { GV_METRIC_COUNTER = 1, GV_METRIC_GAUGE = 2, GV_METRIC_HISTOGRAM = 3 };

/* Ownership: every pointer borrowed for the call. */
typedef struct gv_metric_desc {
  size_t struct_size;
  gv_metric_kind kind;
  const char* name; /* [a-zA-Z_][a-zA-Z0-9_]* */
  const char* help;
  const char* const* label_names;
  size_t label_count;
  const double* buckets; /* histograms: upper bounds, increasing; NULL: the host's defaults */
  size_t bucket_count;
} gv_metric_desc;

/* Registers a metric (again, after a reload: the same definition returns the same metric) and
 * returns its id (> 0), or 0 with a message in error. */
typedef uint64_t (*gv_host_metric_register_fn)(gv_host_plugin* self, const gv_metric_desc* desc,
                                               gv_message_buffer error);

/* Records a value for the given label values (as many as the metric has labels): a counter adds it
 * (negative values are ignored), a gauge is set to it, a histogram observes it.
 * Ownership of label_values: borrowed for the call. */
typedef void (*gv_host_metric_record_fn)(gv_host_plugin* self, uint64_t metric_id,
                                         const gv_bytes* label_values, size_t label_count, double value);

/* --- Calls to other services ----------------------------------------------------------------------
 * In process, through the host's router: no network hop. */

/* Receives the outcome of a call exactly once, on any thread (possibly before call_unary returns).
 * Ownership of message and response: borrowed for the callback. */
typedef void (*gv_call_done_fn)(void* context, gv_status_code code, gv_bytes message, gv_bytes response);

/* Calls the unary method `method` ("/package.Service/Method") of whichever plugin serves it.
 * parent: the call being served, whose principal, metadata and deadline carry over; or NULL.
 * timeout_ms: 0 keeps the parent's deadline (none without a parent); otherwise the earlier of the
 * two. UNIMPLEMENTED when no plugin serves the method. Ownership of request: borrowed for the call;
 * of context: the plugin's. */
typedef void (*gv_host_call_unary_fn)(gv_host_plugin* self, gv_call* parent, gv_bytes method,
                                      gv_bytes request, uint64_t timeout_ms, gv_call_done_fn done,
                                      void* context);

/* --- Timers in nanoseconds (ABI 1.1) --------------------------------------------------------------
 * timer_start with nanosecond delay and period, so that rates like 60 Hz (16 666 667 ns) are kept;
 * otherwise the same as timer_start, and cancelled with timer_cancel. */
typedef uint64_t (*gv_host_timer_start2_fn)(gv_host_plugin* self, uint64_t delay_ns, uint64_t period_ns,
                                            gv_timer_fn fn, void* context, gv_message_buffer error);

/* --- The cache (ABI 1.1) ---------------------------------------------------------------------------
 * Values with a time to live and atomic counters. Keys are the plugin's own: the host puts the
 * plugin's name in front, so plugins never see each other's keys. In process by default, Redis in
 * production; the same calls on both. Every call may fail with UNAVAILABLE (the cache cannot be
 * reached: nothing changed) or INVALID_ARGUMENT (an empty key, or one over 512 bytes). */

/* Appends the value to value; NOT_FOUND when the key is absent or has expired. */
typedef gv_status_code (*gv_host_cache_get_fn)(gv_host_plugin* self, gv_bytes key, gv_byte_sink* value,
                                               gv_message_buffer error);

/* Sets a value (at most the host's max_value_bytes) that expires after ttl_ms (0: never). */
typedef gv_status_code (*gv_host_cache_set_fn)(gv_host_plugin* self, gv_bytes key, gv_bytes value,
                                               uint64_t ttl_ms, gv_message_buffer error);

/* Removes a key; an absent key is not an error. */
typedef gv_status_code (*gv_host_cache_delete_fn)(gv_host_plugin* self, gv_bytes key,
                                                  gv_message_buffer error);

/* Adds delta atomically and writes the new value to *value. A key this call creates expires after
 * ttl_ms (0: never), so the counter counts within a window from its first increment (rate
 * limiting). FAILED_PRECONDITION when the key holds something other than an integer. */
typedef gv_status_code (*gv_host_cache_increment_fn)(gv_host_plugin* self, gv_bytes key, int64_t delta,
                                                     uint64_t ttl_ms, int64_t* value,
                                                     gv_message_buffer error);

/* --- Compare-and-set in the cache (ABI 1.4) -------------------------------------------------------
 * Atomically sets key to value, expiring after ttl_ms (0: never), only when the key's current value
 * equals expected; with expected_present false, only when the key is absent or has expired. With
 * value_present false it removes the key instead. *swapped (may be NULL) tells whether it changed
 * anything. This is the building block of leases held across hosts: acquire (absent -> mine), renew
 * (mine -> mine, a new ttl) and release (mine -> absent). Fails as the other cache calls do, and
 * with INVALID_ARGUMENT for a value over the host's max_value_bytes; on failure nothing changed. */
typedef gv_status_code (*gv_host_cache_compare_and_set_fn)(gv_host_plugin* self, gv_bytes key,
                                                           bool expected_present, gv_bytes expected,
                                                           bool value_present, gv_bytes value,
                                                           uint64_t ttl_ms, bool* swapped,
                                                           gv_message_buffer error);

/* --- Publish / subscribe (ABI 1.1) ----------------------------------------------------------------
 * Topics (1 .. 256 bytes) are shared by every plugin and, with Redis, by every host on the same
 * Redis. Delivery is at most once and in publish order per publisher. */

/* Receives a message on the host's delivery thread, one callback at a time: it must not block for
 * long. Ownership of topic and payload: borrowed for the callback. */
typedef void (*gv_message_fn)(void* context, gv_bytes topic, gv_bytes payload);

/* Publishes payload to every subscriber of topic. UNAVAILABLE while the bus cannot be reached,
 * RESOURCE_EXHAUSTED when this host's subscribers have fallen too far behind. */
typedef gv_status_code (*gv_host_publish_fn)(gv_host_plugin* self, gv_bytes topic, gv_bytes payload,
                                             gv_message_buffer error);

/* Subscribes fn to topic and returns the subscription's id (> 0), or 0 with a message in error.
 * Once it returns, a message published anywhere reaches fn. A subscription belongs to the
 * generation that made it: made in gv_on_init, it starts when that generation starts serving,
 * takes over from the previous generation's at the swap (every message reaches exactly one of
 * them), and ends when the generation retires. Ownership of context: the plugin's. */
typedef uint64_t (*gv_host_subscribe_fn)(gv_host_plugin* self, gv_bytes topic, gv_message_fn fn,
                                         void* context, gv_message_buffer error);

/* Ends a subscription. When it returns, fn is not running and will not run again (unless called
 * from that very callback). Unknown ids are ignored. */
typedef void (*gv_host_unsubscribe_fn)(gv_host_plugin* self, uint64_t subscription_id);

/* --- Blocking work (ABI 1.2) ----------------------------------------------------------------------
 * Work that may block (the store, the cache, calls to other services, password hashing) runs on a
 * host-owned pool, never on the thread that called a hook: no plugin needs threads of its own. Each
 * plugin may use a limited number of the pool's threads at once and queue a limited amount of work
 * ([blocking] in the host's config), so one plugin saturating its share does not slow another.
 * A generation's queued work is dropped (UNAVAILABLE) and its running work waited for before its
 * gv_on_shutdown. */

/* Flags of work, timers and subscriptions. */
enum {
  /* Run the callback on the host's blocking pool, within the plugin's share, instead of on the
   * timer or delivery thread: it may then block. A periodic timer never has two runs waiting (a
   * run that comes due while one waits is skipped); a subscription's messages still arrive one at a
   * time and in order (when its queue is full, a message is dropped and counted). */
  GV_RUN_BLOCKING = 1u << 0
};

/* Receives the outcome of run_blocking exactly once. status is GV_STATUS_OK: do the work now, on
 * this pool thread; anything else: the work is not to be done (GV_STATUS_CANCELLED: its call was
 * cancelled; GV_STATUS_DEADLINE_EXCEEDED: its call's deadline passed while it waited;
 * GV_STATUS_UNAVAILABLE: the generation is shutting down), so only release what context holds.
 * Ownership of context: the plugin's. */
typedef void (*gv_work_fn)(void* context, gv_status_code status);

/* Queues fn on the blocking pool. call: the call the work answers, or NULL; the work is skipped
 * when that call is cancelled or its deadline passes before the work starts. Returns GV_STATUS_OK
 * when fn will be called (exactly once, maybe before run_blocking returns), or
 * GV_STATUS_RESOURCE_EXHAUSTED when the plugin's queue is full, and then fn is never called. */
typedef gv_status_code (*gv_host_run_blocking_fn)(gv_host_plugin* self, gv_call* call, gv_work_fn fn,
                                                  void* context, gv_message_buffer error);

/* timer_start2 with a status code, flags (GV_RUN_BLOCKING) and the id in *out_timer_id. */
typedef gv_status_code (*gv_host_timer_start3_fn)(gv_host_plugin* self, uint64_t delay_ns, uint64_t period_ns,
                                                  uint32_t flags, gv_timer_fn fn, void* context,
                                                  uint64_t* out_timer_id, gv_message_buffer error);

/* subscribe with a status code, flags (GV_RUN_BLOCKING) and the id in *out_subscription_id. */
typedef gv_status_code (*gv_host_subscribe2_fn)(gv_host_plugin* self, gv_bytes topic, uint32_t flags,
                                                gv_message_fn fn, void* context,
                                                uint64_t* out_subscription_id, gv_message_buffer error);

/* metric_register with a status code and the id in *out_metric_id. */
typedef gv_status_code (*gv_host_metric_register2_fn)(gv_host_plugin* self, const gv_metric_desc* desc,
                                                      uint64_t* out_metric_id, gv_message_buffer error);

typedef struct gv_host_api {
  size_t struct_size;
  uint32_t abi_major;
  uint32_t abi_minor; /* the minor in force for this plugin: min(host, plugin) */

  /* 1.0 */
  gv_host_log_fn log;
  gv_host_log_enabled_fn log_enabled;
  gv_host_config_string_fn config_string;
  gv_host_config_int_fn config_int;
  gv_host_config_double_fn config_double;
  gv_host_config_bool_fn config_bool;
  gv_host_call_send_fn call_send;
  gv_host_call_finish_fn call_finish;
  gv_host_call_deadline_fn call_deadline;
  gv_host_call_is_cancelled_fn call_is_cancelled;
  gv_host_call_metadata_fn call_metadata;
  gv_host_call_principal_fn call_principal;
  gv_host_call_method_fn call_method;
  gv_host_call_peer_fn call_peer;
  gv_host_store_get_fn store_get;
  gv_host_store_write_fn store_write;
  gv_host_store_list_fn store_list;
  gv_host_timer_start_fn timer_start;
  gv_host_timer_cancel_fn timer_cancel;
  gv_host_metric_register_fn metric_register;
  gv_host_metric_record_fn metric_record;
  gv_host_call_unary_fn call_unary;

  /* 1.1: read only when abi_minor >= 1 */
  gv_host_cache_get_fn cache_get;
  gv_host_cache_set_fn cache_set;
  gv_host_cache_delete_fn cache_delete;
  gv_host_cache_increment_fn cache_increment;
  gv_host_publish_fn publish;
  gv_host_subscribe_fn subscribe;
  gv_host_unsubscribe_fn unsubscribe;
  gv_host_timer_start2_fn timer_start2;

  /* 1.2: read only when abi_minor >= 2 */
  gv_host_run_blocking_fn run_blocking;
  gv_host_timer_start3_fn timer_start3;
  gv_host_subscribe2_fn subscribe2;
  gv_host_metric_register2_fn metric_register2;

  /* 1.3: read only when abi_minor >= 3 */
  gv_host_call_origin_fn call_origin;

  /* 1.4: read only when abi_minor >= 4 */
  gv_host_cache_compare_and_set_fn cache_compare_and_set;
  /* Later minors append here. */
} gv_host_api;

/* ---------------------------------------------------------------------------------------------
 * What a plugin declares
 * ------------------------------------------------------------------------------------------- */

/* Method flags. */
enum {
  /* Live calls of this streaming method can move to the next generation on hot reload
   * (gv_on_call_detach / gv_on_call_adopt); both generations must set it. */
  GV_METHOD_MOVABLE = 1u << 0
};

/* One method the plugin serves. It must exist in the plugin's descriptor set with the same
 * call kind. Ownership: owned by the plugin, static for the life of the loaded library.
 * The host steps through the table by the descriptor's method_desc_size (1.2), so entries can grow. */
typedef struct gv_method_desc {
  size_t struct_size;
  const char* full_name; /* "/package.Service/Method", as gRPC puts it on the wire */
  gv_call_kind call_kind;
  uint32_t flags; /* GV_METHOD_* */
  /* 1.2: who may call it at the host's gate: "public", "authenticated" or "role:<name>"; NULL
   * means "authenticated". Replaces the descriptor's method_access table. */
  const char* access;
} gv_method_desc;

/* Rules a config key's value must meet (1.2), checked by the host like its own keys. */
enum {
  GV_CONFIG_RULE_MIN = 1u << 0,       /* integer >= min_int, float >= min_double */
  GV_CONFIG_RULE_MAX = 1u << 1,       /* integer <= max_int, float <= max_double */
  GV_CONFIG_RULE_NON_EMPTY = 1u << 2, /* a string that is not empty */
  GV_CONFIG_RULE_ONE_OF = 1u << 3     /* a string that is one of allowed_values */
};

/* One key of the plugin's config table. The host checks the [plugin.config] table against these
 * before gv_on_init: an undeclared key, a wrong type, a missing required key or (1.2) a value that
 * breaks a rule refuses the load, with the file, line and column of the value.
 * Ownership: owned by the plugin, static for the life of the loaded library.
 * The host steps through the table by the descriptor's config_key_desc_size (1.2). */
typedef struct gv_config_key_desc {
  size_t struct_size;
  const char* key;
  gv_config_type type;
  bool required;
  const char* default_value; /* a TOML literal ("30", "\"hi\"", "true"); NULL when required */
  const char* description;
  /* 1.2 */
  uint32_t rules; /* GV_CONFIG_RULE_*; the fields below count only where their rule is set */
  int64_t min_int;
  int64_t max_int;
  double min_double;
  double max_double;
  const char* const* allowed_values;
  size_t allowed_value_count;
} gv_config_key_desc;

/* Hooks. Every hook is called from a host thread. Hooks for one call are never called
 * concurrently with each other; hooks for different calls may be. A hook must not block for
 * long: work that waits replies later, from another thread, through call_send / call_finish.
 * A hook must not let an exception or longjmp escape. */

/* Creates the plugin instance. prev_state holds what the previous generation saved (size 0 on a
 * first load; Ownership: borrowed for the call). On success sets *out_instance (Ownership: owned
 * by the plugin until gv_on_shutdown) and returns GV_STATUS_OK; on failure writes a message into
 * error and returns another code, and the host refuses the load.
 * Ownership of host and self: owned by the host, valid until gv_on_shutdown returns. */
typedef gv_status_code (*gv_on_init_fn)(const gv_host_api* host, gv_host_plugin* self, gv_bytes prev_state,
                                        void** out_instance, gv_message_buffer error);

/* A call begins. For unary and server-streaming methods `request` is the one request message;
 * for client-streaming and bidi it is empty and messages follow through gv_on_call_message.
 * The plugin may set *out_call_state (Ownership: owned by the plugin; handed back in every later
 * hook of this call and freed by the plugin in gv_on_call_release).
 * Ownership of request bytes: borrowed for the duration of the hook. */
typedef void (*gv_on_call_start_fn)(void* instance, gv_call* call, uint32_t method_index, gv_bytes request,
                                    void** out_call_state);

/* A request message of a client-streaming or bidi call. Ownership of message: borrowed for the
 * duration of the hook. */
typedef void (*gv_on_call_message_fn)(void* instance, gv_call* call, void* call_state, gv_bytes message);

/* The client finished sending (client-streaming and bidi only). */
typedef void (*gv_on_call_half_close_fn)(void* instance, gv_call* call, void* call_state);

/* The client cancelled or the deadline passed. The plugin must still finish the call. */
typedef void (*gv_on_call_cancel_fn)(void* instance, gv_call* call, void* call_state);

/* The host is done with the call: no more hooks for it, and `call` becomes invalid when this
 * returns. Called once, after the plugin finished the call. */
typedef void (*gv_on_call_release_fn)(void* instance, gv_call* call, void* call_state);

/* Writes the state the next generation receives in gv_on_init (hot reload). Returns
 * GV_STATUS_OK, or another code with a message in error, which keeps the old generation. */
typedef gv_status_code (*gv_on_save_state_fn)(void* instance, gv_byte_sink* sink, gv_message_buffer error);

/* Hot reload of a live stream, old generation side: the plugin stops producing for the call, writes
 * into sink whatever the next generation needs to continue it exactly (a position, a sequence
 * number), and returns GV_STATUS_OK. From then on the old generation's sends on this call fail and
 * gv_on_call_release follows. Another code keeps the call on the old generation, which drains it.
 * Called only for streaming calls, and only when the next generation has gv_on_call_adopt. */
typedef gv_status_code (*gv_on_call_detach_fn)(void* instance, gv_call* call, void* call_state,
                                               gv_byte_sink* sink);

/* Hot reload of a live stream, new generation side: the call, a new handle for it, continues in
 * this generation. `detached` is what the old generation wrote in gv_on_call_detach (Ownership:
 * borrowed for the hook). Sets *out_call_state like gv_on_call_start and returns GV_STATUS_OK;
 * messages of the call that arrive later go to this generation. Another code makes the host end
 * the call with UNAVAILABLE (and still release it here when *out_call_state was set). */
typedef gv_status_code (*gv_on_call_adopt_fn)(void* instance, gv_call* call, uint32_t method_index,
                                              gv_bytes detached, void** out_call_state);

/* Destroys the instance: the plugin joins its threads and frees what it owns. Every call it
 * was given has been released before. */
typedef void (*gv_on_shutdown_fn)(void* instance);

/* What gv_plugin_entry_v1 returns.
 * Ownership: owned by the plugin, static for the life of the loaded library; every pointer in it
 * likewise. */
typedef struct gv_plugin_descriptor {
  size_t struct_size;
  uint32_t abi_major; /* GV_ABI_VERSION_MAJOR the plugin was built against */
  uint32_t abi_minor; /* GV_ABI_VERSION_MINOR the plugin was built against */

  const char* name;        /* lower-case letters, digits and '-'; matches the config entry */
  const char* version;     /* semantic version of the plugin, "1.4.2" */
  const char* description; /* one line; may be NULL */

  gv_bytes descriptor_set; /* a serialized google.protobuf.FileDescriptorSet with imports */

  const gv_method_desc* methods;
  size_t method_count;

  const gv_config_key_desc* config_keys;
  size_t config_key_count;

  const char* const* dependencies; /* full service names this plugin calls, "pkg.Service" */
  size_t dependency_count;

  gv_on_init_fn on_init;
  gv_on_call_start_fn on_call_start;
  gv_on_call_message_fn on_call_message;       /* NULL when no client-streaming or bidi method */
  gv_on_call_half_close_fn on_call_half_close; /* NULL when no client-streaming or bidi method */
  gv_on_call_cancel_fn on_call_cancel;         /* may be NULL */
  gv_on_call_release_fn on_call_release;       /* may be NULL */
  gv_on_save_state_fn on_save_state;           /* may be NULL: the next generation starts empty */
  gv_on_shutdown_fn on_shutdown;
  gv_on_call_detach_fn on_call_detach; /* may be NULL: live streams drain on the old generation */
  gv_on_call_adopt_fn on_call_adopt;   /* may be NULL: live streams drain on the old generation */

  const char* const* collections; /* the store collections this plugin uses: [a-z0-9_-]{1,64} */
  size_t collection_count;

  /* 1.1: read only when struct_size reaches them */
  /* One access policy per entry of `methods`, in the same order, or NULL (1.2 plugins set
   * gv_method_desc.access instead, which wins where both are set): "public",
   * "authenticated" or "role:<name>". A NULL table or entry means "authenticated": the host's gate
   * lets only signed-in callers through. The host's config can override any of them. */
  const char* const* method_access;

  /* 1.2: the size of one entry of `methods` and of `config_keys`, as the plugin was built (the
   * sizeof of its gv_method_desc and gv_config_key_desc); the host steps through the tables by
   * them, so their entries can grow. 0 (a plugin before 1.2): the 1.0 sizes. */
  size_t method_desc_size;
  size_t config_key_desc_size;
  /* Later minors append here. */
} gv_plugin_descriptor;

/* The entry point every plugin exports, and the only symbol it exports. Returns the plugin's
 * descriptor, or NULL to refuse the host described by `host`.
 * Ownership of host: owned by the host, borrowed for the call. */
typedef const gv_plugin_descriptor* (*gv_plugin_entry_fn)(const gv_host_info* host);

#if defined(_WIN32)
#define GV_PLUGIN_EXPORT __declspec(dllexport)
#else
#define GV_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GAMEVERSE_ABI_H */
