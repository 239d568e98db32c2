// Vectored writes of a file's pieces straight from the memory they lie in.
//
//   writePieces(fd, position, buffers, which, offsets, lengths, count) -> Promise<bytes>
//
// Piece i is buffers[which[i]][offsets[i] .. + lengths[i]): a writer's chunk (file header,
// copied records) or a record lying in the receive slab, its header written in place in
// front of its frame. The pieces go to the file in order from `position` with pwritev on the
// libuv thread pool, IOV_MAX iovecs per call, a short write resumed where it stopped, so the
// promise resolves only when every byte is written (with their sum) and rejects with
// code/errno/syscall otherwise (the writer then cuts the file back to its last whole record).
//
// Syscalls only: which pieces, in what order, and when their memory may be reused are the
// writer's decisions (src/capture/writer.ts). The iovecs are built here from the typed
// arrays on the JS thread, once per call, never a JS object per piece; the buffers stay
// referenced until the write is done, and JS must not write into them meanwhile.

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

namespace {

Napi::Error WriteError(Napi::Env env, const char* syscall, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + " " + uv_err_name(-err));
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

class WritePieces : public Napi::AsyncWorker {
 public:
  WritePieces(Napi::Env env, int fd, int64_t position, Napi::Array buffers, std::vector<iovec> iov, size_t total)
      : Napi::AsyncWorker(env, "mirrorcap:writePieces"),
        deferred_(Napi::Promise::Deferred::New(env)),
        buffers_(Napi::Persistent(buffers.As<Napi::Object>())),
        fd_(fd), position_(position), iov_(std::move(iov)), total_(total) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    size_t first = 0;
    int64_t pos = position_;
    while (first < iov_.size()) {
      int count = static_cast<int>(std::min<size_t>(IOV_MAX, iov_.size() - first));
      ssize_t n = pwritev(fd_, &iov_[first], count, pos);
      if (n < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
        return;
      }
      if (n == 0) {
        err_ = EIO;  // a regular file takes at least a byte unless something is wrong
        return;
      }
      pos += n;
      // Skip what was written; a piece written in part is resumed from where it stopped.
      size_t left = static_cast<size_t>(n);
      while (first < iov_.size() && left >= iov_[first].iov_len) left -= iov_[first++].iov_len;
      if (left > 0) {
        iov_[first].iov_base = static_cast<uint8_t*>(iov_[first].iov_base) + left;
        iov_[first].iov_len -= left;
      }
    }
  }

  void OnOK() override {
    if (err_ == 0) deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(total_)));
    else deferred_.Reject(WriteError(Env(), "pwritev", err_).Value());
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference buffers_;  // keeps every buffer alive until the write is done
  int fd_;
  int64_t position_;
  std::vector<iovec> iov_;
  size_t total_;
  int err_ = 0;
};

bool IsTyped(Napi::Value v, napi_typedarray_type type) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type;
}

Napi::Value StartWritePieces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "writePieces(fd, position, buffers: Buffer[], which: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count)";
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsArray() || !IsTyped(info[3], napi_uint8_array) ||
      !IsTyped(info[4], napi_uint32_array) || !IsTyped(info[5], napi_uint32_array) || !info[6].IsNumber()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array buffers = info[2].As<Napi::Array>();
  Napi::Uint8Array which = info[3].As<Napi::Uint8Array>();
  Napi::Uint32Array offsets = info[4].As<Napi::Uint32Array>();
  Napi::Uint32Array lengths = info[5].As<Napi::Uint32Array>();
  uint32_t count = info[6].As<Napi::Number>().Uint32Value();
  if (count > which.ElementLength() || count > offsets.ElementLength() || count > lengths.ElementLength()) {
    Napi::RangeError::New(env, "writePieces(): count beyond the arrays").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<uint8_t*> base(buffers.Length());
  std::vector<size_t> size(buffers.Length());
  for (uint32_t b = 0; b < buffers.Length(); b++) {
    Napi::Value v = buffers.Get(b);
    if (!v.IsBuffer()) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    base[b] = v.As<Napi::Buffer<uint8_t>>().Data();
    size[b] = v.As<Napi::Buffer<uint8_t>>().Length();
  }
  // Bounds are checked here, once per piece, so a wrong offset is a clear error, never a
  // write of someone else's memory.
  std::vector<iovec> iov(count);
  size_t total = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t b = which[i];
    uint64_t off = offsets[i];
    uint64_t len = lengths[i];
    if (b >= base.size() || off + len > size[b]) {
      Napi::RangeError::New(env, "writePieces(): piece " + std::to_string(i) + " lies outside its buffer")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    iov[i].iov_base = base[b] + off;
    iov[i].iov_len = len;
    total += len;
  }
  auto* work = new WritePieces(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int64Value(),
                               buffers, std::move(iov), total);
  Napi::Promise promise = work->Promise();
  work->Queue();  // deletes itself when done
  return promise;
}

}  // namespace

void InitWritePieces(Napi::Env env, Napi::Object exports) {
  exports.Set("writePieces", Napi::Function::New(env, StartWritePieces, "writePieces"));
}
