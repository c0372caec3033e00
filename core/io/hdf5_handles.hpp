#pragma once
// RAII ownership of HDF5 identifiers and checked HDF5 calls.
//
// Internal to core/io (it includes <hdf5.h>, which only targets linking
// cohort_hdf5 can see); public headers such as checkpoint.hpp never include it.
//
// COHORT_H5(call) evaluates an HDF5 call and throws cohort::Error when it returns a
// negative value. The message carries the call's text, file:line, this process's
// identity and HDF5's own error stack (every frame's function and description),
// collected with H5Ewalk2. HDF5's automatic printing to stderr is switched off for
// every thread that goes through these wrappers, so failures surface once, as
// exceptions, instead of as a wall of library text.
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cohort::core::io::h5 {

// Switches off HDF5's automatic stderr printing for the calling thread (the error
// stack is per thread in a thread-safe build) and registers the error-text provider.
// Cheap after the first call on a thread.
void ensure_quiet();

// Collects the calling thread's HDF5 error stack as text and clears it.
std::string take_error_stack();

[[noreturn]] void throw_hdf5_error(long code, const char* call, const char* file, int line);

template <typename T>
T checked(T result, const char* call, const char* file, int line) {
  if (result < 0) throw_hdf5_error(static_cast<long>(result), call, file, line);
  return result;
}

// Owns one identifier; `Close` is the matching H5*close function.
template <herr_t (*Close)(hid_t)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : m_id(id) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : m_id(std::exchange(o.m_id, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      m_id = std::exchange(o.m_id, H5I_INVALID_HID);
    }
    return *this;
  }
  // Destructors cannot throw; a failed close here is reported to stderr. Paths that
  // must know the close succeeded (a file being written) call close() instead.
  ~Handle() { reset(); }

  hid_t get() const { return m_id; }
  explicit operator bool() const { return m_id >= 0; }

  // Checked close: throws if HDF5 reports a failure (for files this is where
  // buffered metadata is written, so the result matters).
  void close(const char* what, const char* file, int line) {
    if (m_id < 0) return;
    ensure_quiet();
    const hid_t id = std::exchange(m_id, H5I_INVALID_HID);
    checked(Close(id), what, file, line);
  }

 private:
  void reset() noexcept;
  hid_t m_id = H5I_INVALID_HID;
};

// Reports a failed close from a destructor (no throwing allowed there).
void report_close_failure(hid_t id) noexcept;

template <herr_t (*Close)(hid_t)>
void Handle<Close>::reset() noexcept {
  if (m_id < 0) return;
  const hid_t id = std::exchange(m_id, H5I_INVALID_HID);
  if (Close(id) < 0) report_close_failure(id);
}

using File = Handle<H5Fclose>;
using Group = Handle<H5Gclose>;
using Dataset = Handle<H5Dclose>;
using Dataspace = Handle<H5Sclose>;
using Datatype = Handle<H5Tclose>;
using PropList = Handle<H5Pclose>;
using Attribute = Handle<H5Aclose>;
using Object = Handle<H5Oclose>;  // a group or dataset opened by name with H5Oopen

// ---- small helpers built on the wrappers (every call checked) ---------------

// A fixed-length byte string type of `size` bytes (at least 1), null-padded.
Datatype string_type(size_t size);

bool has_attribute(hid_t object, const std::string& name);
void write_string_attribute(hid_t object, const std::string& name, const std::string& value);
std::string read_string_attribute(hid_t object, const std::string& name);
void write_int64_attribute(hid_t object, const std::string& name, int64_t value);
int64_t read_int64_attribute(hid_t object, const std::string& name);

// Names of the links directly inside a group, in name order.
std::vector<std::string> link_names(hid_t group);

}  // namespace cohort::core::io::h5

// Evaluates an HDF5 call after silencing automatic printing; throws on a negative result.
#define COHORT_H5(call)                                                                    \
  ::cohort::core::io::h5::checked((::cohort::core::io::h5::ensure_quiet(), (call)), #call, \
                                  __FILE__, __LINE__)

#define COHORT_H5_CLOSE(handle) (handle).close("H5*close(" #handle ")", __FILE__, __LINE__)
