#pragma once
// Scratch directories for tests that write files.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace cohort::testing {

// A fresh, empty directory under the system temporary directory, unique to this
// process and object; removed with its contents on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "cohort-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return m_path; }
  // The path of `name` inside the directory (nothing is created).
  std::string file(const std::string& name) const { return (m_path / name).string(); }

 private:
  std::filesystem::path m_path;
};

// A fixture whose every test gets its own TempDir.
class TempDirTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return m_temp.file(name); }
  std::string dir() const { return m_temp.path().string(); }
  const std::filesystem::path& dir_path() const { return m_temp.path(); }

 private:
  TempDir m_temp;
};

}  // namespace cohort::testing
