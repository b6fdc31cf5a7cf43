/* Compiled with -std=c99 -pedantic-errors: the ABI header must stay plain C. */
#include <gameverse/abi.h>

size_t abi_header_descriptor_size(void) {
  return sizeof(gv_plugin_descriptor);
}
