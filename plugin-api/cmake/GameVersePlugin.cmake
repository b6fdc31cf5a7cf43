# gameverse_add_plugin(NAME <name> SOURCES <files...> PROTOS <files...>
#                      [PROTO_ROOT <dir>] [IMPORT_DIRS <dirs...>] [RAW])
#
# Builds <name>.so as a GameVerse plugin:
#   - protobuf-lite C++ code for PROTOS (skipped with RAW: a plain C plugin that handles bytes),
#   - their FileDescriptorSet (with imports) embedded as gv_embedded_descriptor_set_data/_size,
#   - hidden visibility and a version script, so gv_plugin_entry_v<major> is the only export,
#   - links only the SDK headers and libprotobuf-lite; undefined symbols fail the link.
# PROTO_ROOT is the import root the .proto files are named under (default: the current source
# dir); a .proto may also lie under one of IMPORT_DIRS (e.g. a plugin's own storage records beside
# a service .proto of a shared tree) and is then named under that dir. The library lands in
# GAMEVERSE_PLUGIN_OUTPUT_DIR when set, else the current binary dir.
include_guard(GLOBAL)


function(gameverse_add_plugin)
  cmake_parse_arguments(GV "RAW" "NAME;PROTO_ROOT" "SOURCES;PROTOS;IMPORT_DIRS" ${ARGN})
  if(NOT GV_NAME OR NOT GV_SOURCES)
    message(FATAL_ERROR "gameverse_add_plugin: NAME and SOURCES are required")
  endif()
  if(NOT GV_PROTO_ROOT)
    set(GV_PROTO_ROOT "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  find_package(Protobuf REQUIRED)

  set(gen_dir "${CMAKE_CURRENT_BINARY_DIR}/${GV_NAME}_generated")
  file(MAKE_DIRECTORY "${gen_dir}")
  set(import_args "--proto_path=${GV_PROTO_ROOT}")
  foreach(dir IN LISTS GV_IMPORT_DIRS Protobuf_INCLUDE_DIRS)
    list(APPEND import_args "--proto_path=${dir}")
  endforeach()

  set(generated_sources "")
  set(proto_abs "")
  foreach(proto IN LISTS GV_PROTOS)
    get_filename_component(abs "${proto}" ABSOLUTE)
    list(APPEND proto_abs "${abs}")
    if(NOT GV_RAW)
      set(rel "")
      foreach(root IN LISTS GV_PROTO_ROOT GV_IMPORT_DIRS)
        get_filename_component(root "${root}" ABSOLUTE)
        cmake_path(IS_PREFIX root "${abs}" NORMALIZE under_root)
        if(under_root AND rel STREQUAL "")
          file(RELATIVE_PATH rel "${root}" "${abs}")
        endif()
      endforeach()
      if(rel STREQUAL "")
        message(FATAL_ERROR
                "gameverse_add_plugin(${GV_NAME}): ${proto} is under neither PROTO_ROOT nor IMPORT_DIRS")
      endif()
      string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
      set(outputs "${gen_dir}/${stem}.pb.cc" "${gen_dir}/${stem}.pb.h")
      add_custom_command(
        OUTPUT ${outputs}
        COMMAND protobuf::protoc ${import_args} "--cpp_out=lite:${gen_dir}" "${abs}"
        DEPENDS "${abs}" protobuf::protoc
        COMMENT "protoc (lite) ${rel}"
        VERBATIM)
      list(APPEND generated_sources ${outputs})
    endif()
  endforeach()

  set(descriptor_set "${gen_dir}/descriptor_set.pb")
  set(descriptor_c "${gen_dir}/descriptor_set.c")
  add_custom_command(
    OUTPUT "${descriptor_set}"
    COMMAND protobuf::protoc ${import_args} --include_imports
            "--descriptor_set_out=${descriptor_set}" ${proto_abs}
    DEPENDS ${proto_abs} protobuf::protoc
    COMMENT "descriptor set for plugin ${GV_NAME}"
    VERBATIM)
  add_custom_command(
    OUTPUT "${descriptor_c}"
    COMMAND ${CMAKE_COMMAND} "-DINPUT=${descriptor_set}" "-DOUTPUT=${descriptor_c}"
            -P "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/embed_file.cmake"
    DEPENDS "${descriptor_set}" "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/embed_file.cmake"
    VERBATIM)

  set(version_script "${CMAKE_CURRENT_BINARY_DIR}/${GV_NAME}.exports.map")
  file(WRITE "${version_script}" "{\n  global: gv_plugin_entry_v1;\n  local: *;\n};\n")

  add_library(${GV_NAME} MODULE ${GV_SOURCES} ${generated_sources} "${descriptor_c}")
  target_include_directories(${GV_NAME} PRIVATE "${gen_dir}")
  target_link_libraries(${GV_NAME} PRIVATE GameVerse::sdk)
  if(NOT GV_RAW)
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(GV_PROTOBUF_LITE REQUIRED IMPORTED_TARGET protobuf-lite)
    target_link_libraries(${GV_NAME} PRIVATE PkgConfig::GV_PROTOBUF_LITE)
  endif()
  set_target_properties(${GV_NAME} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS "${version_script}")
  if(GAMEVERSE_PLUGIN_OUTPUT_DIR)
    set_target_properties(${GV_NAME} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${GAMEVERSE_PLUGIN_OUTPUT_DIR}")
  endif()
  # -fno-gnu-unique: a unique symbol would pin the library in memory and defeat unloading.
  target_compile_options(${GV_NAME} PRIVATE $<$<COMPILE_LANG_AND_ID:CXX,GNU>:-fno-gnu-unique>)
  target_link_options(${GV_NAME} PRIVATE "-Wl,--version-script=${version_script}" "-Wl,-z,defs")
endfunction()
