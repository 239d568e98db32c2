// Catching what a C library prints on stderr during one synchronous call.
//
// libpcap's cap binding prints "Warning: SIOCGIFADDR: <iface>: No such device - This may
// not actually work" with fprintf(stderr) when opening an interface without an IPv4
// address (or none at all), before mirrorcap can say anything clean. JavaScript cannot
// move fd 2, so these two calls do, around that one call:
//
//   redirectStderr()      -> [saved, readEnd]   fd 2 now writes into a pipe
//   ... the library call, synchronous, on the JS thread ...
//   restoreStderr(saved, readEnd) -> text       fd 2 back as it was; what was written
//
// Syscalls only: what the text means (a log line, or nothing when a clean error follows)
// is decided in src/source/libpcap.ts. The pipe is non-blocking, so a writer that fills it
// (64 KiB) loses the rest instead of blocking the process.

#include <napi.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <string>

namespace {

Napi::Value Fail(Napi::Env env, const char* syscall, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + " " + strerror(err));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

Napi::Value RedirectStderr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return Fail(env, "pipe2", errno);
  fflush(stderr);
  int saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (saved < 0 || dup2(fds[1], STDERR_FILENO) < 0) {
    int err = errno;
    if (saved >= 0) close(saved);
    close(fds[0]);
    close(fds[1]);
    return Fail(env, saved < 0 ? "fcntl(F_DUPFD_CLOEXEC)" : "dup2", err);
  }
  close(fds[1]);
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, saved));
  out.Set(1u, Napi::Number::New(env, fds[0]));
  return out;
}

Napi::Value RestoreStderr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int saved = info[0].ToNumber().Int32Value();
  int readEnd = info[1].ToNumber().Int32Value();
  fflush(stderr);
  int rc = dup2(saved, STDERR_FILENO);
  int err = errno;
  close(saved);
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = read(readEnd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EAGAIN: drained (fd 2 no longer writes into it); 0: closed
  }
  close(readEnd);
  if (rc < 0) return Fail(env, "dup2", err);
  return Napi::String::New(env, text);
}

}  // namespace

void InitStderrCapture(Napi::Env env, Napi::Object exports) {
  exports.Set("redirectStderr", Napi::Function::New(env, RedirectStderr, "redirectStderr"));
  exports.Set("restoreStderr", Napi::Function::New(env, RestoreStderr, "restoreStderr"));
}
