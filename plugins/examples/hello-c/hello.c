/* A plugin in plain C99 against gameverse/abi.h alone: no SDK, no C++, no protobuf library.
 * It encodes and decodes its two one-field messages by hand, which shows that the boundary is C. */
#include <gameverse/abi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Provided by gameverse_add_plugin() from hello.proto. */
extern const unsigned char gv_embedded_descriptor_set_data[];
extern const size_t gv_embedded_descriptor_set_size;

enum { MAX_NAME_BYTES = 256, MAX_GREETING_BYTES = 256 };

typedef struct hello_instance {
  const gv_host_api* host;
  char greeting[MAX_GREETING_BYTES];
} hello_instance;

static void write_error(gv_message_buffer error, const char* message) {
  if (error.data != NULL && error.capacity > 0) {
    snprintf(error.data, error.capacity, "%s", message);
  }
}

static gv_status_code hello_init(const gv_host_api* host, gv_host_plugin* self, gv_bytes prev_state,
                                 void** out_instance, gv_message_buffer error) {
  gv_bytes greeting;
  hello_instance* instance;
  (void)prev_state;
  if (!host->config_string(self, "greeting", &greeting)) {
    write_error(error, "config key 'greeting' is missing");
    return GV_STATUS_FAILED_PRECONDITION;
  }
  if (greeting.size >= MAX_GREETING_BYTES) {
    write_error(error, "config key 'greeting' is longer than 255 bytes");
    return GV_STATUS_INVALID_ARGUMENT;
  }
  instance = (hello_instance*)calloc(1, sizeof *instance);
  if (instance == NULL) {
    write_error(error, "out of memory");
    return GV_STATUS_RESOURCE_EXHAUSTED;
  }
  instance->host = host;
  memcpy(instance->greeting, greeting.data, greeting.size);
  *out_instance = instance;
  host->log(self, GV_LOG_INFO, "hello-c ready", strlen("hello-c ready"));
  return GV_STATUS_OK;
}

/* Reads a varint; returns the number of bytes used, 0 when malformed. */
static size_t read_varint(const uint8_t* p, size_t size, uint64_t* out) {
  uint64_t value = 0;
  size_t i;
  for (i = 0; i < size && i < 10; ++i) {
    value |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if ((p[i] & 0x80) == 0) {
      *out = value;
      return i + 1;
    }
  }
  return 0;
}

/* Finds field 1 (length-delimited) of GreetRequest, skipping unknown fields as protobuf does.
 * Returns false when the bytes are not a valid message. */
static bool decode_name(gv_bytes request, const uint8_t** name, size_t* name_size) {
  size_t pos = 0;
  *name = NULL;
  *name_size = 0;
  while (pos < request.size) {
    uint64_t key, length;
    size_t n = read_varint(request.data + pos, request.size - pos, &key);
    if (n == 0) return false;
    pos += n;
    switch (key & 7) {
      case 0: /* varint */
        n = read_varint(request.data + pos, request.size - pos, &length);
        if (n == 0) return false;
        pos += n;
        break;
      case 1: /* 64-bit */
        if (request.size - pos < 8) return false;
        pos += 8;
        break;
      case 2: /* length-delimited */
        n = read_varint(request.data + pos, request.size - pos, &length);
        if (n == 0 || length > request.size - pos - n) return false;
        pos += n;
        if ((key >> 3) == 1) {
          *name = request.data + pos;
          *name_size = (size_t)length;
        }
        pos += (size_t)length;
        break;
      case 5: /* 32-bit */
        if (request.size - pos < 4) return false;
        pos += 4;
        break;
      default: return false;
    }
  }
  return true;
}

static void finish(const hello_instance* instance, gv_call* call, gv_status_code code, const char* message) {
  instance->host->call_finish(call, code, message, strlen(message));
}

static void hello_call_start(void* instance_ptr, gv_call* call, uint32_t method_index, gv_bytes request,
                             void** out_call_state) {
  const hello_instance* instance = (const hello_instance*)instance_ptr;
  const uint8_t* name;
  size_t name_size;
  char text[MAX_GREETING_BYTES + 2 + MAX_NAME_BYTES + 1];
  uint8_t reply[3 + sizeof text];
  size_t text_size, header_size;
  (void)out_call_state;
  if (method_index != 0) {
    finish(instance, call, GV_STATUS_UNIMPLEMENTED, "hello-c serves only Greet");
    return;
  }
  if (!decode_name(request, &name, &name_size)) {
    finish(instance, call, GV_STATUS_INVALID_ARGUMENT,
           "request does not parse as gameverse.hello.v1.GreetRequest");
    return;
  }
  if (name_size == 0) {
    finish(instance, call, GV_STATUS_INVALID_ARGUMENT, "name must not be empty");
    return;
  }
  if (name_size > MAX_NAME_BYTES) {
    finish(instance, call, GV_STATUS_INVALID_ARGUMENT, "name is longer than 256 bytes");
    return;
  }
  /* GreetReply { message = "<greeting>, <name>!" }: tag 0x0a, a varint length, the text. */
  text_size = 0;
  memcpy(text, instance->greeting, strlen(instance->greeting));
  text_size += strlen(instance->greeting);
  memcpy(text + text_size, ", ", 2);
  text_size += 2;
  memcpy(text + text_size, name, name_size);
  text_size += name_size;
  text[text_size++] = '!';
  reply[0] = 0x0a;
  if (text_size < 128) {
    reply[1] = (uint8_t)text_size;
    header_size = 2;
  } else {
    reply[1] = (uint8_t)(0x80 | (text_size & 0x7f));
    reply[2] = (uint8_t)(text_size >> 7);
    header_size = 3;
  }
  memcpy(reply + header_size, text, text_size);
  instance->host->call_send(call, reply, header_size + text_size);
  finish(instance, call, GV_STATUS_OK, "");
}

static void hello_shutdown(void* instance) {
  free(instance);
}

/* The gate lets anyone greet. */
static const gv_method_desc hello_methods[] = {
    {sizeof(gv_method_desc), "/gameverse.hello.v1.Hello/Greet", GV_CALL_UNARY, 0, "public"},
};

static const gv_config_key_desc hello_config[] = {
    {sizeof(gv_config_key_desc), "greeting", GV_CONFIG_STRING, false, "\"Hello\"",
     "What the greeting starts with", GV_CONFIG_RULE_NON_EMPTY, 0, 0, 0, 0, NULL, 0},
};

GV_PLUGIN_EXPORT const gv_plugin_descriptor* gv_plugin_entry_v1(const gv_host_info* host) {
  static gv_plugin_descriptor descriptor;
  (void)host;
  descriptor.struct_size = sizeof descriptor;
  descriptor.abi_major = GV_ABI_VERSION_MAJOR;
  descriptor.abi_minor = GV_ABI_VERSION_MINOR;
  descriptor.name = "hello-c";
  descriptor.version = "1.0.0";
  descriptor.description = "Greets in plain C";
  descriptor.descriptor_set.data = gv_embedded_descriptor_set_data;
  descriptor.descriptor_set.size = gv_embedded_descriptor_set_size;
  descriptor.methods = hello_methods;
  descriptor.method_count = sizeof hello_methods / sizeof hello_methods[0];
  descriptor.config_keys = hello_config;
  descriptor.config_key_count = sizeof hello_config / sizeof hello_config[0];
  descriptor.on_init = hello_init;
  descriptor.on_call_start = hello_call_start;
  descriptor.on_shutdown = hello_shutdown;
  /* The host steps through the tables by these, so their entries can grow in later versions. */
  descriptor.method_desc_size = sizeof(gv_method_desc);
  descriptor.config_key_desc_size = sizeof(gv_config_key_desc);
  return &descriptor;
}
