// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Files for fp8moe::io (POSIX): a read-only memory mapping (`mapped_file`), a writer that never
// leaves a half-written file behind (`atomic_file_writer`: temp file in the target's directory,
// fsync, rename over the target, fsync of the directory), and whole-file text reads.
// Every failure throws fp8moe::error (errc::io) naming the file and the system's reason.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "fp8moe/core/error.hpp"

namespace fp8moe::io {

namespace detail {

/// errc::io error "fp8moe::io: '<file>': <what>".
[[noreturn]] inline void throw_file(std::filesystem::path const& file, std::string_view what) {
  throw error(errc::io, fp8moe::detail::concat("fp8moe::io: '", file.string(), "': ", what));
}
[[noreturn]] inline void throw_errno(std::filesystem::path const& file, std::string_view call) {
  int const e = errno;
  throw_file(file, fp8moe::detail::concat(call, " failed: ", std::strerror(e)));
}

/// Closes a descriptor on scope exit unless released.
struct fd_guard {
  int fd = -1;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

}  // namespace detail

/// A whole file mapped read-only. Move-only; the mapping lives as long as the object. The bytes
/// are what the file held when it was opened; truncating the file while it is mapped is undefined
/// (SIGBUS on Linux), as with every mmap reader.
class mapped_file {
 public:
  mapped_file() = default;
  explicit mapped_file(std::filesystem::path path) : path_(std::move(path)) {
    detail::fd_guard fd{::open(path_.c_str(), O_RDONLY | O_CLOEXEC)};
    if (fd.fd < 0) detail::throw_errno(path_, "open");
    struct stat st {};
    if (::fstat(fd.fd, &st) != 0) detail::throw_errno(path_, "fstat");
    if (!S_ISREG(st.st_mode)) detail::throw_file(path_, "not a regular file");
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ == 0) return;  // mmap refuses length 0; an empty file is an empty span
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
    if (p == MAP_FAILED) detail::throw_errno(path_, "mmap");
    data_ = static_cast<std::byte const*>(p);
  }
  mapped_file(mapped_file&& o) noexcept
      : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  mapped_file& operator=(mapped_file&& o) noexcept {
    if (this != &o) {
      unmap();
      path_ = std::move(o.path_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  mapped_file(mapped_file const&) = delete;
  mapped_file& operator=(mapped_file const&) = delete;
  ~mapped_file() { unmap(); }

  std::span<std::byte const> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  std::filesystem::path const& path() const { return path_; }

 private:
  void unmap() noexcept {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
  std::filesystem::path path_;
  std::byte const* data_ = nullptr;
  std::size_t size_ = 0;
};

/// Writes a file atomically: the bytes go to a fresh temp file beside the target
/// ("<dir>/.<name>.tmp-XXXXXX", mode 0644); commit() fsyncs it, renames it over the target and
/// fsyncs the directory. Destroyed without commit() (an exception, a failed write), the temp file
/// is removed and the target is untouched: a reader sees the old file or the new one, never a mix.
class atomic_file_writer {
 public:
  explicit atomic_file_writer(std::filesystem::path target) : target_(std::move(target)) {
    std::filesystem::path dir = target_.parent_path();
    if (dir.empty()) dir = ".";
    std::string name(1, '.');  // built by appends: GCC 12 -Wrestrict misfires on "." + std::string
    name.append(target_.filename().string()).append(".tmp-XXXXXX");
    std::string tmpl = (dir / name).string();
    fd_ = ::mkstemp(tmpl.data());
    if (fd_ < 0) detail::throw_errno(target_, "creating a temp file in its directory (mkstemp)");
    temp_ = tmpl;
    if (::fchmod(fd_, 0644) != 0) {
      discard();
      detail::throw_errno(target_, "fchmod of the temp file");
    }
  }
  atomic_file_writer(atomic_file_writer const&) = delete;
  atomic_file_writer& operator=(atomic_file_writer const&) = delete;
  ~atomic_file_writer() { discard(); }

  /// Appends bytes (retrying short writes and EINTR).
  void write(std::span<std::byte const> b) {
    if (fd_ < 0) detail::throw_file(target_, "write after commit");
    std::size_t done = 0;
    while (done < b.size()) {
      ::ssize_t const n = ::write(fd_, b.data() + done, b.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) detail::throw_errno(target_, "write (temp file)");
      done += static_cast<std::size_t>(n);
    }
    written_ += b.size();
  }
  void write(std::string_view s) { write(std::as_bytes(std::span<char const>(s.data(), s.size()))); }

  /// Bytes written so far.
  std::uint64_t written() const { return written_; }
  /// The temp file's path (empty after commit or discard).
  std::filesystem::path const& temp_path() const { return temp_; }

  /// Makes the new contents durable and visible under the target name.
  void commit() {
    if (fd_ < 0) detail::throw_file(target_, "commit after commit");
    if (::fsync(fd_) != 0) detail::throw_errno(target_, "fsync (temp file)");
    int const fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {
      ::unlink(temp_.c_str());
      temp_.clear();
      detail::throw_errno(target_, "close (temp file)");
    }
    if (::rename(temp_.c_str(), target_.c_str()) != 0) {
      int const e = errno;
      ::unlink(temp_.c_str());
      temp_.clear();
      errno = e;
      detail::throw_errno(target_, "rename of the temp file over the target");
    }
    temp_.clear();
    std::filesystem::path dir = target_.parent_path();
    if (dir.empty()) dir = ".";
    detail::fd_guard d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (d.fd >= 0) ::fsync(d.fd);  // best effort: some file systems refuse a directory fsync
  }

 private:
  void discard() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (!temp_.empty()) ::unlink(temp_.c_str());
    temp_.clear();
  }
  std::filesystem::path target_, temp_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
};

/// Writes `bytes` to `path` atomically (atomic_file_writer).
inline void write_file_atomically(std::filesystem::path const& path, std::span<std::byte const> bytes) {
  atomic_file_writer w(path);
  w.write(bytes);
  w.commit();
}

/// The whole file as text; files larger than `max_bytes` are refused (a config or index file is
/// megabytes at most; a larger one is not what the caller meant).
inline std::string read_text_file(std::filesystem::path const& path, std::size_t max_bytes = 256u << 20) {
  mapped_file f(path);
  if (f.size() > max_bytes)
    detail::throw_file(path, fp8moe::detail::concat("file is ", f.size(), " bytes, more than the ", max_bytes,
                                                    " a text file of this kind may have"));
  auto const b = f.bytes();
  return std::string(reinterpret_cast<char const*>(b.data()), b.size());
}

}  // namespace fp8moe::io
