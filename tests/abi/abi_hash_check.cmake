# Fails when abi.h changed but its version did not: abi.lock holds "<major>.<minor> <sha256>"
# for every released version of the header.
file(SHA256 "${HEADER}" actual)
file(STRINGS "${HEADER}" major_line REGEX "^#define GV_ABI_VERSION_MAJOR ")
file(STRINGS "${HEADER}" minor_line REGEX "^#define GV_ABI_VERSION_MINOR ")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" major "${major_line}")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" minor "${minor_line}")
set(version "${major}.${minor}")
file(STRINGS "${LOCK}" entries REGEX "^${major}\\.${minor} ")
if(NOT entries)
  message(FATAL_ERROR "abi.lock has no entry for ABI ${version}. Add the line:\n${version} ${actual}")
endif()
string(REGEX REPLACE "^[0-9.]+ +" "" recorded "${entries}")
if(NOT recorded STREQUAL actual)
  message(FATAL_ERROR "gameverse/abi.h changed but its version is still ${version} "
    "(recorded ${recorded}, now ${actual}). Bump GV_ABI_VERSION_MINOR for an append-only change "
    "or GV_ABI_VERSION_MAJOR for a break, then add the line '<new version> ${actual}' to abi.lock.")
endif()
message(STATUS "abi.h matches ABI ${version}")
