#include "core/io/hdf5_handles.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <mutex>

#include "core/error.hpp"

namespace cohort::core::io::h5 {
namespace {

// The stack text of the failure being thrown on this thread. throw_library_error asks
// the registered provider for the text of a code; HDF5's codes (-1) say nothing, so
// the provider hands back the stack collected just before the throw instead.
thread_local std::string t_last_stack;

std::string hdf5_error_text(long /*code*/) {
  return t_last_stack.empty() ? std::string("no HDF5 error stack recorded") : t_last_stack;
}

herr_t collect_frame(unsigned n, const H5E_error2_t* frame, void* client) {
  auto* frames = static_cast<std::vector<std::string>*>(client);
  char minor[256] = {0};
  H5E_type_t type;
  if (H5Eget_msg(frame->min_num, &type, minor, sizeof(minor)) < 0) minor[0] = '\0';
  std::string text = fmt::format("#{} {}(): {}", n, frame->func_name ? frame->func_name : "?",
                                 frame->desc ? frame->desc : "");
  if (minor[0] != '\0') text += fmt::format(" ({})", minor);
  // Some descriptions embed newlines (H5F_open prints a ctime); keep one line per frame.
  for (char& c : text)
    if (c == '\n') c = ' ';
  frames->push_back(std::move(text));
  return 0;
}

}  // namespace

void ensure_quiet() {
  static std::once_flag registered;
  std::call_once(registered,
                 [] { cohort::set_error_text_provider(Library::hdf5, &hdf5_error_text); });
  thread_local bool quiet = false;
  if (!quiet) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    quiet = true;
  }
}

std::string take_error_stack() {
  std::vector<std::string> frames;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, &collect_frame, &frames);
  H5Eclear2(H5E_DEFAULT);
  std::string text;
  for (const std::string& f : frames) {
    if (!text.empty()) text += "; ";
    text += f;
  }
  // The operating system's reason, when a frame carries one ("errno = 28, error
  // message = 'No space left on device'"), goes first: a full disk or quota must
  // not need a 30-frame stack to be recognised.
  const std::string key = "error message = '";
  const size_t at = text.find(key);
  if (at != std::string::npos) {
    const size_t begin = at + key.size(), end = text.find('\'', begin);
    if (end != std::string::npos && end > begin)
      text = text.substr(begin, end - begin) + "; " + text;
  }
  return text;
}

void throw_hdf5_error(long code, const char* call, const char* file, int line) {
  ensure_quiet();
  t_last_stack = take_error_stack();
  cohort::throw_library_error(Library::hdf5, code, call, file, line);
}

void report_close_failure(hid_t id) noexcept {
  t_last_stack = take_error_stack();
  cohort::print_library_error(Library::hdf5, -1, "H5*close (destructor)", __FILE__, __LINE__);
  (void)id;
}

Datatype string_type(size_t size) {
  Datatype type(COHORT_H5(H5Tcopy(H5T_C_S1)));
  COHORT_H5(H5Tset_size(type.get(), size == 0 ? 1 : size));
  COHORT_H5(H5Tset_strpad(type.get(), H5T_STR_NULLPAD));
  return type;
}

bool has_attribute(hid_t object, const std::string& name) {
  return COHORT_H5(H5Aexists(object, name.c_str())) > 0;
}

void write_string_attribute(hid_t object, const std::string& name, const std::string& value) {
  Datatype type = string_type(value.size());
  Dataspace space(COHORT_H5(H5Screate(H5S_SCALAR)));
  Attribute attr(COHORT_H5(
      H5Acreate2(object, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  // A null-padded type of at least one byte: pad an empty value to that byte.
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  COHORT_H5(H5Awrite(attr.get(), type.get(), padded.data()));
}

std::string read_string_attribute(hid_t object, const std::string& name) {
  Attribute attr(COHORT_H5(H5Aopen(object, name.c_str(), H5P_DEFAULT)));
  Datatype type(COHORT_H5(H5Aget_type(attr.get())));
  COHORT_CHECK(H5Tget_class(type.get()) == H5T_STRING,
               fmt::format("HDF5 attribute '{}' is not a string", name));
  COHORT_CHECK(H5Tis_variable_str(type.get()) == 0,
               fmt::format("HDF5 attribute '{}' is a variable-length string; cohort writes and "
                           "reads fixed-length ones",
                           name));
  const size_t size = H5Tget_size(type.get());
  COHORT_CHECK(size > 0, fmt::format("HDF5 attribute '{}' has an empty string type", name));
  std::string value(size, '\0');
  COHORT_H5(H5Aread(attr.get(), type.get(), value.data()));
  // Null padding (or termination) ends the text.
  if (const size_t end = value.find('\0'); end != std::string::npos) value.resize(end);
  return value;
}

void write_int64_attribute(hid_t object, const std::string& name, int64_t value) {
  Dataspace space(COHORT_H5(H5Screate(H5S_SCALAR)));
  Attribute attr(COHORT_H5(
      H5Acreate2(object, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT)));
  COHORT_H5(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value));
}

int64_t read_int64_attribute(hid_t object, const std::string& name) {
  Attribute attr(COHORT_H5(H5Aopen(object, name.c_str(), H5P_DEFAULT)));
  Datatype type(COHORT_H5(H5Aget_type(attr.get())));
  COHORT_CHECK(H5Tget_class(type.get()) == H5T_INTEGER,
               fmt::format("HDF5 attribute '{}' is not an integer", name));
  Dataspace space(COHORT_H5(H5Aget_space(attr.get())));
  COHORT_CHECK(COHORT_H5(H5Sget_simple_extent_npoints(space.get())) == 1,
               fmt::format("HDF5 attribute '{}' is not a single value", name));
  int64_t value = 0;
  COHORT_H5(H5Aread(attr.get(), H5T_NATIVE_INT64, &value));
  return value;
}

std::vector<std::string> link_names(hid_t group) {
  H5G_info_t info;
  COHORT_H5(H5Gget_info(group, &info));
  std::vector<std::string> names;
  names.reserve(info.nlinks);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t length = COHORT_H5(
        H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT));
    std::string name(static_cast<size_t>(length) + 1, '\0');
    COHORT_H5(H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(),
                                 name.size(), H5P_DEFAULT));
    name.resize(static_cast<size_t>(length));
    names.push_back(std::move(name));
  }
  return names;
}

}  // namespace cohort::core::io::h5
